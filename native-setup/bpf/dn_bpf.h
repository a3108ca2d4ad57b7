/* Small pieces every distnat BPF program uses: IPv4 header checksums and
 * the TTL decrement exactly as the kernel's forwarding does it. Only UAPI
 * headers: no kernel structure is read, so the objects need no CO-RE
 * relocations and load on any kernel with the helpers they call
 * (docs/ebpf.md).
 */
#ifndef DISTNAT_DN_BPF_H
#define DISTNAT_DN_BPF_H

#include <linux/types.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define DN_ETH_HLEN 14
#define DN_IPV4_HLEN 20
#define DN_IPPROTO_IPIP 4
#define DN_IP_DF 0x4000
#define DN_IP_FRAGMENT 0x3fff /* MF or an offset */

static __always_inline __u16 dn_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* The one's complement sum of an option-less IPv4 header: 0xffff when its
 * checksum is right. */
static __always_inline __u16 dn_ipv4_sum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return dn_fold(sum);
}

/* The header checksum of an option-less header whose check field is 0. */
static __always_inline __u16 dn_ipv4_checksum(const struct iphdr *ip)
{
	return (__u16)~dn_ipv4_sum(ip);
}

/* include/net/ip.h ip_decrease_ttl(), so the checksum comes out bit for bit
 * as when the kernel forwards (its 0x0000/0xffff choice included). */
static __always_inline void dn_decrease_ttl(struct iphdr *ip)
{
	__u32 check = (__u32)ip->check;
	check += (__u32)bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xffff));
	ip->ttl--;
}

/* CLOCK_MONOTONIC at the last tick: the heartbeat and FIG. 12's stamps need
 * milliseconds, and reading the clock source is dear (a paravirtual clock
 * read per packet showed in the profile on a VM). */
static __always_inline __u64 dn_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

static __always_inline void dn_copy_mac(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, 6);
}

static __always_inline int dn_mac_equal(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b && *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

#endif
