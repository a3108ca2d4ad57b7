/* The host agent's fast path (docs/ebpf.md): the common case of
 * src/host/forwarder.ts in the kernel, without the TUN and raw-socket
 * crossings.
 *
 * Outbound, tc egress of the TUN (dn0): a datagram from the shared address
 * whose source port is leased (native mode) or has an established
 * translation (translate mode: the port is rewritten, RFC 1624 checksum
 * update) gets the outer header host -> router and goes out of the LAN.
 * Inbound, tc ingress of the LAN interface: IP-in-IP from the router loses
 * its outer header, has its destination port translated back (translate
 * mode) and is delivered to the stack as if read from dn0.
 *
 * The agent keeps everything else, unchanged: IPsec (all of it, when it
 * runs IPsec), ICMP (identifiers and quoted datagrams), TCP segments with
 * SYN, FIN or RST (MSS clamping, the translation's TCP state), fragments,
 * options, anything too big, the first packets of a flow (no translation
 * yet). The TTL is not touched, as the agent does not touch it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dn_bpf.h"
#include "host.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#ifndef AF_INET
#define AF_INET 2
#endif
#define PACKET_HOST 0
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define OUT 0
#define IN 1

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dn_host_config);
} host_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dn_host_counters);
} host_counters SEC(".maps");

/* Native mode: 1 for every leased port. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} leased SEC(".maps");

/* Translate mode: established FIG. 11 rows, both ways. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DN_HOST_PLANES * 65536);
	__type(key, __u32);
	__type(value, __u16);
} out_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DN_HOST_PLANES * 65536);
	__type(key, __u32);
	__type(value, __u16);
} in_port SEC(".maps");

/* When a translated row was last used, by plane * 65536 + leased port: the
 * agent's idle timers read it (mapped into its memory). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DN_HOST_PLANES * 65536);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} last_use SEC(".maps");

static __always_inline int pass(struct dn_host_counters *c, int dir, int reason)
{
	c->pass[dir][reason]++;
	return TC_ACT_OK;
}

/* As router.h: stamps closer together are not rewritten. */
#define DN_HOST_STAMP_GRANULE_NS (1ULL << 24)

static __always_inline void stamp(__u32 slot, __u64 now)
{
	__u64 *seen = bpf_map_lookup_elem(&last_use, &slot);
	if (seen && now - *seen >= DN_HOST_STAMP_GRANULE_NS)
		*seen = now;
}

/* What both directions check of the datagram itself: TCP (no SYN, FIN or
 * RST) and UDP only; its plane, or a pass reason as a negative number. */
static __always_inline int transport(struct iphdr *ip, void *data_end, __u32 len)
{
	__u8 *t = (void *)(ip + 1);
	__u32 tlen = len - DN_IPV4_HLEN;

	switch (ip->protocol) {
	case IPPROTO_TCP:
		if (tlen < 20 || (void *)(t + 14) > data_end)
			return -DN_HOST_PASS_MALFORMED;
		if (t[13] & (TCP_SYN | TCP_FIN | TCP_RST))
			return -DN_HOST_PASS_TCP_CONTROL;
		return 0;
	case IPPROTO_UDP:
		if (tlen < 8 || (void *)(t + 8) > data_end)
			return -DN_HOST_PASS_MALFORMED;
		return 1;
	case IPPROTO_ICMP:
		return -DN_HOST_PASS_ICMP;
	default:
		return -DN_HOST_PASS_PROTOCOL;
	}
}

/* Rewrites the port at `at` (source or destination) of the TCP or UDP header at l4. */
static __always_inline int rewrite_port(struct __sk_buff *skb, __u32 l4, __u32 at, int udp, __u16 from, __u16 to)
{
	__u16 old = bpf_htons(from), new = bpf_htons(to);
	__u32 csum = l4 + (udp ? 6 : 16);
	/* A zero UDP checksum means none (RFC 768) and stays zero. */
	if (bpf_l4_csum_replace(skb, csum, old, new, sizeof(new) | (udp ? BPF_F_MARK_MANGLED_0 : 0)))
		return -1;
	return bpf_skb_store_bytes(skb, l4 + at, &new, sizeof(new), 0);
}

SEC("tc")
int dn_host_out(struct __sk_buff *skb)
{
	struct dn_host_config *cfg = bpf_map_lookup_elem(&host_config, &(__u32){ 0 });
	struct dn_host_counters *c = bpf_map_lookup_elem(&host_counters, &(__u32){ 0 });

	if (!cfg || !c)
		return TC_ACT_OK;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return pass(c, OUT, DN_HOST_PASS_OTHER);
	__u64 now = dn_now();
	if (now > cfg->alive_until_ns)
		return pass(c, OUT, DN_HOST_PASS_STALE);
	if (cfg->ipsec)
		return pass(c, OUT, DN_HOST_PASS_IPSEC);
	if (skb->gso_segs > 1)
		return pass(c, OUT, DN_HOST_PASS_GSO);
	__u32 linear = skb->data_end - skb->data;
	if (linear < 2 * DN_IPV4_HLEN && skb->len > linear)
		bpf_skb_pull_data(skb, skb->len < 2 * DN_IPV4_HLEN ? skb->len : 2 * DN_IPV4_HLEN);

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data;
	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
		return pass(c, OUT, DN_HOST_PASS_MALFORMED);
	if (ip->ihl != 5)
		return pass(c, OUT, DN_HOST_PASS_OPTIONS);
	__u32 len = bpf_ntohs(ip->tot_len);
	if (len < DN_IPV4_HLEN || len != skb->len || dn_ipv4_sum(ip) != 0xffff)
		return pass(c, OUT, DN_HOST_PASS_MALFORMED);
	if (ip->saddr != cfg->shared)
		return pass(c, OUT, DN_HOST_PASS_NOT_SHARED);
	if (ip->frag_off & bpf_htons(DN_IP_FRAGMENT))
		return pass(c, OUT, DN_HOST_PASS_FRAGMENT);
	if (len + DN_IPV4_HLEN > cfg->lan_mtu)
		return pass(c, OUT, DN_HOST_PASS_TOO_BIG);
	int plane = transport(ip, data_end, len);
	if (plane < 0)
		return pass(c, OUT, -plane);
	__u16 *sport = (void *)(ip + 1);
	__u16 local = bpf_ntohs(*sport);
	__u16 wire = local;
	if (cfg->mode == DN_HOST_TRANSLATE) {
		__u32 slot = plane * 65536 + local;
		__u16 *leased_port = bpf_map_lookup_elem(&out_port, &slot);
		if (!leased_port || *leased_port == 0)
			return pass(c, OUT, DN_HOST_PASS_NO_MAPPING);
		wire = *leased_port;
	} else {
		__u32 key = local;
		__u8 *held = bpf_map_lookup_elem(&leased, &key);
		if (!held || *held == 0)
			return pass(c, OUT, DN_HOST_PASS_UNLEASED);
	}

	/* Changes from here. */
	if (wire != local && rewrite_port(skb, DN_IPV4_HLEN, 0, plane == 1, local, wire))
		return c->error++, TC_ACT_SHOT;
	if (cfg->mode == DN_HOST_TRANSLATE)
		stamp(plane * 65536 + wire, now);
	if (bpf_skb_adjust_room(skb, DN_IPV4_HLEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4)) {
		if (wire == local)
			return pass(c, OUT, DN_HOST_PASS_ADJUST_FAILED);
		return c->error++, TC_ACT_SHOT;
	}
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	struct iphdr *outer = data;
	ip = (void *)(outer + 1);
	if ((void *)(ip + 1) > data_end)
		return c->error++, TC_ACT_SHOT;
	/* RFC 2003 3.1, as src/wire/ipip.ts encapsulate() writes it. */
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = ip->tos;
	outer->tot_len = bpf_htons(len + DN_IPV4_HLEN);
	outer->id = (__u16)bpf_get_prandom_u32();
	outer->frag_off = ip->frag_off & bpf_htons(DN_IP_DF);
	outer->ttl = 64;
	outer->protocol = DN_IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = cfg->lan_addr;
	outer->daddr = cfg->router;
	outer->check = dn_ipv4_checksum(outer);
	/* The TUN gives no link header, and a redirect to the LAN needs one:
	 * room for it here, filled in by the neighbour code (a unicast
	 * placeholder until then). */
	if (bpf_skb_change_head(skb, DN_ETH_HLEN, 0))
		return c->error++, TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return c->error++, TC_ACT_SHOT;
	__builtin_memset(eth, 0, sizeof(*eth));
	eth->h_proto = bpf_htons(ETH_P_IP);
	c->traffic[DN_HOST_OUT_PACKETS]++;
	c->traffic[DN_HOST_OUT_BYTES] += len + DN_IPV4_HLEN;
	struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = cfg->router };
	return bpf_redirect_neigh(cfg->lan_ifindex, &nh, sizeof(nh), 0);
}

SEC("tc")
int dn_host_in(struct __sk_buff *skb)
{
	struct dn_host_config *cfg = bpf_map_lookup_elem(&host_config, &(__u32){ 0 });
	struct dn_host_counters *c = bpf_map_lookup_elem(&host_counters, &(__u32){ 0 });

	if (!cfg || !c)
		return TC_ACT_OK;
	__u32 want = DN_ETH_HLEN + 2 * DN_IPV4_HLEN + 14;
	__u32 linear = skb->data_end - skb->data;
	if (linear < want && skb->len > linear)
		bpf_skb_pull_data(skb, skb->len < want ? skb->len : want);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = data + DN_ETH_HLEN;
	if ((void *)(outer + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || skb->pkt_type != PACKET_HOST ||
	    outer->protocol != DN_IPPROTO_IPIP || outer->daddr != cfg->lan_addr)
		return pass(c, IN, DN_HOST_PASS_OTHER);
	__u64 now = dn_now();
	if (now > cfg->alive_until_ns)
		return pass(c, IN, DN_HOST_PASS_STALE);
	if (cfg->ipsec)
		return pass(c, IN, DN_HOST_PASS_IPSEC);
	if (skb->gso_segs > 1)
		return pass(c, IN, DN_HOST_PASS_GSO);
	if (outer->version != 4 || outer->ihl < 5)
		return pass(c, IN, DN_HOST_PASS_MALFORMED);
	if (outer->ihl != 5)
		return pass(c, IN, DN_HOST_PASS_OPTIONS);
	__u32 outer_len = bpf_ntohs(outer->tot_len);
	if (outer_len < 2 * DN_IPV4_HLEN || outer_len > skb->len - DN_ETH_HLEN || dn_ipv4_sum(outer) != 0xffff)
		return pass(c, IN, DN_HOST_PASS_MALFORMED);
	if (outer->frag_off & bpf_htons(DN_IP_FRAGMENT))
		return pass(c, IN, DN_HOST_PASS_FRAGMENT);
	if (outer->saddr != cfg->router)
		return pass(c, IN, DN_HOST_PASS_NOT_ROUTER);
	struct iphdr *ip = (void *)(outer + 1);
	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
		return pass(c, IN, DN_HOST_PASS_MALFORMED);
	__u32 len = bpf_ntohs(ip->tot_len);
	if (len != outer_len - DN_IPV4_HLEN || dn_ipv4_sum(ip) != 0xffff)
		return pass(c, IN, DN_HOST_PASS_MALFORMED);
	if (ip->ihl != 5)
		return pass(c, IN, DN_HOST_PASS_OPTIONS);
	if (ip->daddr != cfg->shared)
		return pass(c, IN, DN_HOST_PASS_NOT_SHARED);
	if (ip->frag_off & bpf_htons(DN_IP_FRAGMENT))
		return pass(c, IN, DN_HOST_PASS_FRAGMENT);
	if (len > cfg->tun_mtu)
		return pass(c, IN, DN_HOST_PASS_TOO_BIG);
	int plane = transport(ip, data_end, len);
	if (plane < 0)
		return pass(c, IN, -plane);
	__u16 *dport = (void *)(ip + 1) + 2;
	__u16 wire = bpf_ntohs(*dport);
	__u16 local = wire;
	if (cfg->mode == DN_HOST_TRANSLATE) {
		__u32 slot = plane * 65536 + wire;
		__u16 *local_port = bpf_map_lookup_elem(&in_port, &slot);
		if (!local_port || *local_port == 0)
			return pass(c, IN, DN_HOST_PASS_NO_MAPPING);
		local = *local_port;
	}

	if (bpf_skb_adjust_room(skb, -DN_IPV4_HLEN, BPF_ADJ_ROOM_MAC, 0))
		return pass(c, IN, DN_HOST_PASS_ADJUST_FAILED);
	/* Changed from here. Ethernet padding goes, as the kernel trims it. */
	if (skb->len > DN_ETH_HLEN + len && bpf_skb_change_tail(skb, DN_ETH_HLEN + len, 0))
		return c->error++, TC_ACT_SHOT;
	if (local != wire && rewrite_port(skb, DN_ETH_HLEN + DN_IPV4_HLEN, 2, plane == 1, wire, local))
		return c->error++, TC_ACT_SHOT;
	if (cfg->mode == DN_HOST_TRANSLATE)
		stamp(plane * 65536 + wire, now);
	c->traffic[DN_HOST_IN_PACKETS]++;
	c->traffic[DN_HOST_IN_BYTES] += len;
	/* As if read from dn0: the stack's rules for the TUN apply. */
	return bpf_redirect(cfg->tun_ifindex, BPF_F_INGRESS);
}
