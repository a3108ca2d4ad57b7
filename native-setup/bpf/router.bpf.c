/* The router's fast path (docs/ebpf.md): the common case of the TUN data
 * path of src/router/forwarder.ts, in the kernel.
 *
 * LAN ingress: IP-in-IP to the router's LAN address whose outer source owns
 * the inner source port (ICMP identifier; for ESP/AH: holds a lease) loses
 * its outer header and goes out of the WAN as the kernel would forward it
 * (route lookup, TTL - 1). WAN ingress: a datagram for a shared address is
 * given an outer header router -> owner (by destination port, identifier or
 * SPI) and goes out of the LAN, TTL - 1 as when the kernel routed it into
 * the TUN. With several shared addresses a port is owned per address (its
 * slot, router.h); an SPI is the router's alone, whatever the address.
 *
 * Everything else is left to the kernel unchanged, which hands it to the
 * slow path as before: the router's raw socket (LAN) or the TUN (WAN). That
 * is every datagram the slow path treats specially (hairpin, fragments,
 * ICMP errors, options, TTL running out, over an MTU, no owner, headers that
 * fail a check) and everything that is not the tunnel's (PAP, ARP, the
 * router's own traffic). The fast path drops only what the slow path would
 * drop for the same reason without a doubt (not-shared-source,
 * spoofed-port, no-lease, spi-withdrawn), and counts every packet it
 * refuses, by reason.
 *
 * tc (clsact) programs are what the router attaches; the XDP pair does the
 * same on a frame and serves the comparison in docs/ebpf.md.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dn_bpf.h"
#include "router.h"

/* bpf_fib_lookup is GPL-only; MIT is the project's own licence. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

#ifndef AF_INET
#define AF_INET 2
#endif
#define PACKET_HOST 0

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dn_router_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dn_router_counters);
} counters SEC(".maps");

/* FIG. 8: owner of each port slot (and ICMP query identifier), 0 = none.
 * Sized for one address here; the control plane makes it 65536 per address. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DN_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} port_owner SEC(".maps");

/* FIG. 21 by granule: spi >> spi_shift -> owner, for the aligned part of
 * each leased block; the ragged ends of unaligned blocks are in spi_exact.
 * These grow with the leases (no preallocation): memory follows use, and
 * lookups cost the same. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u32);
} spi_blocks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u32);
} spi_exact SEC(".maps");

/* Hosts holding any block: the check for what carries no port of theirs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u32);
} holders SEC(".maps");

/* FIG. 12's timestamps, mapped into the control plane's memory. Sized for
 * one address, like port_owner. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DN_PLANES * DN_PORTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} last_seen SEC(".maps");

/* Withdrawn SPIs (router.h), a copy of the slow path's record kept by the
 * control plane: ESP in UDP is demultiplexed by the host's port, so without
 * it an SA the router cut would still reach the host. Empty but for the
 * rare withdrawal; looked up only for UDP from port 4500. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u64);
} withdrawn_spis SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dn_sa_key);
	__type(value, struct dn_sa_value);
} outbound_sa SEC(".maps");

enum verdict {
	V_PASS,
	V_DROP,
	V_FORWARD,
};

/* What a decision found out for the program that acts on it. */
struct forward {
	__u32 host;      /* LAN: the sender; WAN: the owner */
	__u32 inner_len; /* total length of the datagram that is forwarded (inner) */
	__u32 ifindex;   /* out of here */
	__u32 nexthop;   /* for bpf_redirect_neigh */
	__u8 smac[6];
	__u8 dmac[6];
	__u8 neigh;      /* the route lookup knew no MAC for the next hop */
};

static __always_inline int pass(struct dn_router_counters *c, int dir, int reason)
{
	c->pass[dir][reason]++;
	return V_PASS;
}

static __always_inline int is_icmp_query(__u8 type)
{
	return type == 0 || type == 8 || type == 13 || type == 14;
}

/* The index of `addr` among the shared addresses, or -1. */
static __always_inline int shared_index(const struct dn_router_config *cfg, __u32 addr)
{
	__u32 n = cfg->shared_count;

	for (__u32 i = 0; i < DN_MAX_SHARED; i++) {
		if (i >= n)
			break;
		if (cfg->shared[i] == addr)
			return (int)i;
	}
	return -1;
}

static __always_inline __u32 *port_owner_of(__u32 index, __u16 port)
{
	__u32 slot = index * DN_PORTS + port;

	return bpf_map_lookup_elem(&port_owner, &slot);
}

static __always_inline void stamp(__u32 index, __u32 plane, __u16 port, __u64 now)
{
	__u32 key = (index * DN_PLANES + plane) * DN_PORTS + port;
	__u64 *seen = bpf_map_lookup_elem(&last_seen, &key);

	if (seen && now - *seen >= DN_STAMP_GRANULE_NS)
		*seen = now;
}

static __always_inline __u32 spi_owner(__u32 spi, const struct dn_router_config *cfg)
{
	__u32 granule = spi >> (cfg->spi_shift & 31);
	__u32 *owner = bpf_map_lookup_elem(&spi_blocks, &granule);

	if (owner)
		return *owner;
	owner = bpf_map_lookup_elem(&spi_exact, &spi);
	return owner ? *owner : 0;
}

/* True when `spi` lies in a block the router withdrew and has not leased again. */
static __always_inline int spi_withdrawn(__u32 spi)
{
	__u32 granule = spi >> DN_WITHDRAWN_SHIFT;
	__u64 *bits = bpf_map_lookup_elem(&withdrawn_spis, &granule);

	return bits && ((*bits >> (spi & 63)) & 1);
}

static __always_inline void learn_sa(__u32 remote, __u32 spi, __u32 proto, __u32 host, __u64 now)
{
	struct dn_sa_key key = { .remote = remote, .spi = spi, .proto = proto };
	struct dn_sa_value *seen = bpf_map_lookup_elem(&outbound_sa, &key);

	if (seen && seen->host == host && now - seen->last_ns < 1000000000ULL)
		return;
	struct dn_sa_value value = { .host = host, .last_ns = now };
	bpf_map_update_elem(&outbound_sa, &key, &value, BPF_ANY);
}

/* Takes the route lookup's answer; V_FORWARD when it names `want` as the way out. */
static __always_inline int route(struct bpf_fib_lookup *f, long rc, __u32 want, struct dn_router_counters *c,
				 int dir, struct forward *out)
{
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return pass(c, dir, DN_PASS_TOO_BIG);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return pass(c, dir, DN_PASS_NO_ROUTE);
	if (f->ifindex != want)
		return pass(c, dir, DN_PASS_OTHER_INTERFACE);
	out->ifindex = f->ifindex;
	out->nexthop = f->ipv4_dst;
	out->neigh = rc == BPF_FIB_LKUP_RET_NO_NEIGH;
	dn_copy_mac(out->smac, f->smac);
	dn_copy_mac(out->dmac, f->dmac);
	return V_FORWARD;
}

/* A frame from the LAN: forward its inner datagram, drop it, or leave it
 * to the kernel. Changes nothing. `wire_len` is the frame's length (it may
 * extend past data_end in a non-linear skb); `for_us` says the frame is
 * addressed to this machine at layer 2. */
static __always_inline int lan_decide(void *ctx, void *data, void *data_end, __u32 wire_len, int for_us, int gso,
				      const struct dn_router_config *cfg, struct dn_router_counters *c,
				      struct forward *out)
{
	struct ethhdr *eth = data;
	struct iphdr *outer = data + DN_ETH_HLEN;

	if ((void *)(outer + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || !for_us ||
	    outer->protocol != DN_IPPROTO_IPIP || outer->daddr != cfg->lan_addr)
		return pass(c, DN_FROM_LAN, DN_PASS_OTHER);
	__u64 now = dn_now();
	if (now > cfg->alive_until_ns)
		return pass(c, DN_FROM_LAN, DN_PASS_STALE);
	if (gso)
		return pass(c, DN_FROM_LAN, DN_PASS_GSO);
	if (outer->version != 4 || outer->ihl < 5)
		return pass(c, DN_FROM_LAN, DN_PASS_OUTER_MALFORMED);
	if (outer->ihl != 5)
		return pass(c, DN_FROM_LAN, DN_PASS_OUTER_OPTIONS);
	__u32 outer_len = bpf_ntohs(outer->tot_len);
	if (outer_len < 2 * DN_IPV4_HLEN || outer_len > wire_len - DN_ETH_HLEN || dn_ipv4_sum(outer) != 0xffff)
		return pass(c, DN_FROM_LAN, DN_PASS_OUTER_MALFORMED);
	if (outer->frag_off & bpf_htons(DN_IP_FRAGMENT))
		return pass(c, DN_FROM_LAN, DN_PASS_OUTER_FRAGMENT);

	struct iphdr *ip = (void *)(outer + 1);
	if ((void *)(ip + 1) > data_end)
		return pass(c, DN_FROM_LAN, DN_PASS_OUTER_MALFORMED);
	__u32 len = bpf_ntohs(ip->tot_len);
	/* RFC 2003 3.1: the outer datagram carries exactly the inner one. */
	if (ip->version != 4 || len != outer_len - DN_IPV4_HLEN)
		return pass(c, DN_FROM_LAN, DN_PASS_OUTER_MALFORMED);
	if (ip->ihl < 5)
		return pass(c, DN_FROM_LAN, DN_PASS_MALFORMED);
	if (ip->ihl != 5)
		return pass(c, DN_FROM_LAN, DN_PASS_OPTIONS);
	if (len < DN_IPV4_HLEN || dn_ipv4_sum(ip) != 0xffff)
		return pass(c, DN_FROM_LAN, DN_PASS_MALFORMED);

	/* From here the slow path's checks would reach the same verdicts. */
	int index = shared_index(cfg, ip->saddr);
	if (index < 0) {
		c->traffic[DN_LAN_RX_PACKETS]++;
		c->traffic[DN_LAN_RX_BYTES] += outer_len;
		c->drop[DN_DROP_NOT_SHARED_SOURCE]++;
		return V_DROP;
	}
	/* To any shared address, its own or another: the slow path turns it around. */
	if (shared_index(cfg, ip->daddr) >= 0)
		return pass(c, DN_FROM_LAN, DN_PASS_HAIRPIN);
	if (ip->frag_off & bpf_htons(DN_IP_FRAGMENT))
		return pass(c, DN_FROM_LAN, DN_PASS_FRAGMENT);

	__u32 host = outer->saddr;
	__u32 tlen = len - DN_IPV4_HLEN;
	__u8 *t = (void *)(ip + 1);
	__u32 plane = DN_PLANES; /* none: nothing to stamp */
	__u16 port = 0;
	__u32 *owner;
	int drop = -1;

	switch (ip->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		if (tlen < (ip->protocol == IPPROTO_TCP ? 20 : 8) || (void *)(t + 4) > data_end)
			return pass(c, DN_FROM_LAN, DN_PASS_TRUNCATED);
		port = bpf_ntohs(*(__u16 *)t);
		owner = port_owner_of(index, port);
		if (!owner || *owner != host) {
			/* IKE from a port nobody owns may be a host's Delete from a block
			 * withdrawn from it moments ago, which the slow path lets out for a
			 * few seconds (src/router/data-path/outbound-check.ts, the drain):
			 * it decides, and counts what it refuses as spoofed-port. */
			__u16 dport = bpf_ntohs(*(__u16 *)(t + 2));
			if (ip->protocol == IPPROTO_UDP && (!owner || *owner == 0) &&
			    (dport == 500 || dport == 4500))
				return pass(c, DN_FROM_LAN, DN_PASS_NO_OWNER);
			drop = DN_DROP_SPOOFED_PORT;
		}
		plane = ip->protocol == IPPROTO_TCP ? DN_PLANE_TCP : DN_PLANE_UDP;
		break;
	case IPPROTO_ICMP:
		if (tlen < 8 || (void *)(t + 8) > data_end)
			return pass(c, DN_FROM_LAN, DN_PASS_TRUNCATED);
		if (!is_icmp_query(t[0]))
			return pass(c, DN_FROM_LAN, DN_PASS_ICMP);
		port = bpf_ntohs(*(__u16 *)(t + 4));
		owner = port_owner_of(index, port);
		if (!owner || *owner != host)
			drop = DN_DROP_SPOOFED_PORT;
		plane = DN_PLANE_ICMP;
		break;
	case IPPROTO_ESP:
	case IPPROTO_AH: {
		int ah = ip->protocol == IPPROTO_AH;
		if (tlen < (ah ? 12 : 8) || (void *)(t + 8) > data_end)
			return pass(c, DN_FROM_LAN, DN_PASS_TRUNCATED);
		if (!bpf_map_lookup_elem(&holders, &host)) {
			drop = DN_DROP_NO_LEASE;
			break;
		}
		/* Going out, the SPI is the remote's: only noted, for ICMP errors about it. */
		__u32 spi = bpf_ntohl(*(__u32 *)(t + (ah ? 4 : 0)));
		learn_sa(ip->daddr, spi, ip->protocol, host, now);
		break;
	}
	default:
		return pass(c, DN_FROM_LAN, DN_PASS_PROTOCOL);
	}
	if (drop >= 0) {
		c->traffic[DN_LAN_RX_PACKETS]++;
		c->traffic[DN_LAN_RX_BYTES] += outer_len;
		if (drop == DN_DROP_SPOOFED_PORT)
			c->drop[DN_DROP_SPOOFED_PORT]++;
		else
			c->drop[DN_DROP_NO_LEASE]++;
		return V_DROP;
	}
	/* The kernel would send time exceeded once the slow path wrote it into the TUN. */
	if (ip->ttl <= 1)
		return pass(c, DN_FROM_LAN, DN_PASS_TTL);

	/* Routed as the kernel routes it when it is read from the TUN. */
	struct bpf_fib_lookup f = {};
	f.family = AF_INET;
	f.tos = ip->tos;
	f.l4_protocol = ip->protocol;
	if (plane == DN_PLANE_TCP || plane == DN_PLANE_UDP) {
		f.sport = *(__u16 *)t;
		if ((void *)(t + 4) <= data_end)
			f.dport = *(__u16 *)(t + 2);
	}
	f.tot_len = len;
	f.ifindex = cfg->tun_ifindex;
	f.ipv4_src = ip->saddr;
	f.ipv4_dst = ip->daddr;
	long rc = bpf_fib_lookup(ctx, &f, sizeof(f), 0);
	if (route(&f, rc, cfg->wan_ifindex, c, DN_FROM_LAN, out) != V_FORWARD)
		return V_PASS;

	if (plane < DN_PLANES)
		stamp(index, plane, port, now);
	out->host = host;
	out->inner_len = len;
	c->traffic[DN_LAN_RX_PACKETS]++;
	c->traffic[DN_LAN_RX_BYTES] += outer_len;
	return V_FORWARD;
}

/* A frame from the WAN: tunnel it to its owner, drop it, or leave it to the
 * kernel. Changes nothing. */
static __always_inline int wan_decide(void *ctx, void *data, void *data_end, __u32 wire_len, int for_us, int gso,
				      const struct dn_router_config *cfg, struct dn_router_counters *c,
				      struct forward *out)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = data + DN_ETH_HLEN;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || !for_us)
		return pass(c, DN_FROM_WAN, DN_PASS_OTHER);
	int index = shared_index(cfg, ip->daddr);
	if (index < 0)
		return pass(c, DN_FROM_WAN, DN_PASS_OTHER);
	__u64 now = dn_now();
	if (now > cfg->alive_until_ns)
		return pass(c, DN_FROM_WAN, DN_PASS_STALE);
	if (gso)
		return pass(c, DN_FROM_WAN, DN_PASS_GSO);
	if (ip->version != 4 || ip->ihl < 5)
		return pass(c, DN_FROM_WAN, DN_PASS_MALFORMED);
	if (ip->ihl != 5)
		return pass(c, DN_FROM_WAN, DN_PASS_OPTIONS);
	__u32 len = bpf_ntohs(ip->tot_len);
	if (len < DN_IPV4_HLEN || len > wire_len - DN_ETH_HLEN || dn_ipv4_sum(ip) != 0xffff)
		return pass(c, DN_FROM_WAN, DN_PASS_MALFORMED);
	if (ip->frag_off & bpf_htons(DN_IP_FRAGMENT))
		return pass(c, DN_FROM_WAN, DN_PASS_FRAGMENT);
	if (shared_index(cfg, ip->saddr) >= 0)
		return pass(c, DN_FROM_WAN, DN_PASS_SHARED_SOURCE);
	/* Routing it into the TUN, the kernel would answer time exceeded... */
	if (ip->ttl <= 1)
		return pass(c, DN_FROM_WAN, DN_PASS_TTL);
	/* ...or fragmentation needed (or fragment it); the slow path drops what
	 * does not fit the LAN once tunnelled. */
	if (len > cfg->tun_mtu || len + DN_IPV4_HLEN > cfg->lan_mtu)
		return pass(c, DN_FROM_WAN, DN_PASS_TOO_BIG);

	__u32 tlen = len - DN_IPV4_HLEN;
	__u8 *t = (void *)(ip + 1);
	__u32 plane = DN_PLANES;
	__u16 port = 0;
	__u32 owner = 0;
	__u32 *found;

	switch (ip->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		if (tlen < (ip->protocol == IPPROTO_TCP ? 20 : 8) || (void *)(t + 4) > data_end)
			return pass(c, DN_FROM_WAN, DN_PASS_TRUNCATED);
		port = bpf_ntohs(*(__u16 *)(t + 2));
		found = port_owner_of(index, port);
		owner = found ? *found : 0;
		plane = ip->protocol == IPPROTO_TCP ? DN_PLANE_TCP : DN_PLANE_UDP;
		/* ESP in UDP (RFC 3948) on an SA of a withdrawn SPI block: the slow
		 * path drops it as spi-withdrawn (src/router/data-path/inbound-demux.ts),
		 * in the same order (an owned port first), so this drops it too
		 * rather than handing a peer's flood to the TUN. A zero SPI is the
		 * non-ESP marker (IKE), which passes. */
		if (owner != 0 && ip->protocol == IPPROTO_UDP && *(__u16 *)t == bpf_htons(DN_NATT_PORT) &&
		    tlen >= 16) {
			if ((void *)(t + 12) > data_end)
				return pass(c, DN_FROM_WAN, DN_PASS_TRUNCATED);
			__u32 spi = bpf_ntohl(*(__u32 *)(t + 8));
			if (spi != 0 && spi_withdrawn(spi)) {
				c->traffic[DN_WAN_RX_PACKETS]++;
				c->traffic[DN_WAN_RX_BYTES] += len;
				c->drop[DN_DROP_SPI_WITHDRAWN]++;
				return V_DROP;
			}
		}
		break;
	case IPPROTO_ICMP:
		if (tlen < 8 || (void *)(t + 8) > data_end)
			return pass(c, DN_FROM_WAN, DN_PASS_TRUNCATED);
		if (!is_icmp_query(t[0]))
			return pass(c, DN_FROM_WAN, DN_PASS_ICMP);
		port = bpf_ntohs(*(__u16 *)(t + 4));
		found = port_owner_of(index, port);
		owner = found ? *found : 0;
		plane = DN_PLANE_ICMP;
		break;
	case IPPROTO_ESP:
	case IPPROTO_AH: {
		int ah = ip->protocol == IPPROTO_AH;
		if (tlen < (ah ? 12 : 8) || (void *)(t + 8) > data_end)
			return pass(c, DN_FROM_WAN, DN_PASS_TRUNCATED);
		__u32 spi = bpf_ntohl(*(__u32 *)(t + (ah ? 4 : 0)));
		if (spi < 256)
			return pass(c, DN_FROM_WAN, DN_PASS_RESERVED_SPI);
		owner = spi_owner(spi, cfg);
		break;
	}
	default:
		return pass(c, DN_FROM_WAN, DN_PASS_PROTOCOL);
	}
	if (owner == 0)
		return pass(c, DN_FROM_WAN, DN_PASS_NO_OWNER);

	/* The tunnel leaves as the slow path's IPPROTO_RAW socket on the LAN would send it. */
	struct bpf_fib_lookup f = {};
	f.family = AF_INET;
	f.tos = ip->tos;
	f.l4_protocol = DN_IPPROTO_IPIP;
	f.tot_len = len + DN_IPV4_HLEN;
	f.ifindex = cfg->lan_ifindex;
	f.ipv4_src = cfg->lan_addr;
	f.ipv4_dst = owner;
	long rc = bpf_fib_lookup(ctx, &f, sizeof(f), BPF_FIB_LOOKUP_OUTPUT);
	if (route(&f, rc, cfg->lan_ifindex, c, DN_FROM_WAN, out) != V_FORWARD)
		return V_PASS;

	if (plane < DN_PLANES)
		stamp(index, plane, port, now);
	out->host = owner;
	out->inner_len = len;
	c->traffic[DN_WAN_RX_PACKETS]++;
	c->traffic[DN_WAN_RX_BYTES] += len;
	return V_FORWARD;
}

/* The outer header RFC 2003 asks for, as src/wire/ipip.ts encapsulate()
 * writes it: TOS and DF copied from the inner header, TTL 64. */
static __always_inline void write_outer(struct iphdr *outer, const struct iphdr *ip, __u32 len, __u32 src,
					__u32 dst)
{
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = ip->tos;
	outer->tot_len = bpf_htons(len + DN_IPV4_HLEN);
	outer->id = (__u16)bpf_get_prandom_u32();
	outer->frag_off = ip->frag_off & bpf_htons(DN_IP_DF);
	outer->ttl = 64;
	outer->protocol = DN_IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = src;
	outer->daddr = dst;
	outer->check = dn_ipv4_checksum(outer);
}

static __always_inline long tc_redirect(struct __sk_buff *skb, struct forward *f)
{
	if (f->neigh) {
		struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = f->nexthop };
		return bpf_redirect_neigh(f->ifindex, &nh, sizeof(nh), 0);
	}
	void *data = (void *)(long)skb->data;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return TC_ACT_SHOT;
	dn_copy_mac(eth->h_dest, f->dmac);
	dn_copy_mac(eth->h_source, f->smac);
	return bpf_redirect(f->ifindex, 0);
}

/* The headers the decisions read: Ethernet, two IPv4 headers, 8 bytes of transport. */
#define PULL_LEN (DN_ETH_HLEN + 2 * DN_IPV4_HLEN + 8)

static __always_inline void tc_pull(struct __sk_buff *skb)
{
	__u32 linear = skb->data_end - skb->data;
	if (linear < PULL_LEN && skb->len > linear)
		bpf_skb_pull_data(skb, skb->len < PULL_LEN ? skb->len : PULL_LEN);
}

static __always_inline struct dn_router_config *get_config(void)
{
	return bpf_map_lookup_elem(&config, &(__u32){ 0 });
}

static __always_inline struct dn_router_counters *get_counters(void)
{
	return bpf_map_lookup_elem(&counters, &(__u32){ 0 });
}

static __always_inline int fastpath_error(struct dn_router_counters *c)
{
	c->drop[DN_DROP_FASTPATH_ERROR]++;
	return TC_ACT_SHOT;
}

SEC("tc")
int dn_router_lan(struct __sk_buff *skb)
{
	struct dn_router_config *cfg = get_config();
	struct dn_router_counters *c = get_counters();
	struct forward f = {};

	if (!cfg || !c)
		return TC_ACT_OK;
	tc_pull(skb);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	int v = lan_decide(skb, data, data_end, skb->len, skb->pkt_type == PACKET_HOST, skb->gso_segs > 1, cfg, c,
			   &f);
	if (v == V_PASS)
		return TC_ACT_OK;
	if (v == V_DROP)
		return TC_ACT_SHOT;

	if (bpf_skb_adjust_room(skb, -DN_IPV4_HLEN, BPF_ADJ_ROOM_MAC, 0)) {
		pass(c, DN_FROM_LAN, DN_PASS_ADJUST_FAILED);
		return TC_ACT_OK;
	}
	/* Changed now: from here a failure can only drop it. Ethernet padding of
	 * a short frame goes, as the kernel trims it before forwarding. */
	if (skb->len > DN_ETH_HLEN + f.inner_len && bpf_skb_change_tail(skb, DN_ETH_HLEN + f.inner_len, 0))
		return fastpath_error(c);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + DN_ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return fastpath_error(c);
	dn_decrease_ttl(ip);
	c->traffic[DN_OUTBOUND_PACKETS]++;
	c->traffic[DN_OUTBOUND_BYTES] += f.inner_len;
	return tc_redirect(skb, &f);
}

SEC("tc")
int dn_router_wan(struct __sk_buff *skb)
{
	struct dn_router_config *cfg = get_config();
	struct dn_router_counters *c = get_counters();
	struct forward f = {};

	if (!cfg || !c)
		return TC_ACT_OK;
	tc_pull(skb);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	int v = wan_decide(skb, data, data_end, skb->len, skb->pkt_type == PACKET_HOST, skb->gso_segs > 1, cfg, c,
			   &f);
	if (v == V_PASS)
		return TC_ACT_OK;
	if (v == V_DROP)
		return TC_ACT_SHOT;

	/* Ethernet padding (every datagram under 46 bytes from a real NIC) or
	 * bytes past the total length go first, as the kernel trims them before
	 * forwarding: bpf_skb_change_tail() refuses an skb marked encapsulated,
	 * which the adjustment below does, so trimming after it dropped them. */
	__u32 end = DN_ETH_HLEN + f.inner_len;
	if (skb->len > end && bpf_skb_change_tail(skb, end, 0)) {
		pass(c, DN_FROM_WAN, DN_PASS_ADJUST_FAILED);
		return TC_ACT_OK;
	}
	/* Marked as encapsulated, so a checksum still to be completed by the
	 * device (CHECKSUM_PARTIAL) is completed for the inner datagram. */
	if (bpf_skb_adjust_room(skb, DN_IPV4_HLEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4)) {
		pass(c, DN_FROM_WAN, DN_PASS_ADJUST_FAILED);
		return TC_ACT_OK;
	}
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	struct iphdr *outer = data + DN_ETH_HLEN;
	struct iphdr *ip = (void *)(outer + 1);
	if ((void *)(ip + 1) > data_end)
		return fastpath_error(c);
	dn_decrease_ttl(ip);
	write_outer(outer, ip, f.inner_len, cfg->lan_addr, f.host);
	c->traffic[DN_INBOUND_PACKETS]++;
	c->traffic[DN_INBOUND_BYTES] += f.inner_len + DN_IPV4_HLEN;
	return tc_redirect(skb, &f);
}

/* XDP: the same decisions on a frame. No skb, so the L2 destination is
 * checked by hand and a next hop without a known MAC is left to the kernel
 * (XDP has no bpf_redirect_neigh). */

SEC("xdp")
int dn_router_lan_xdp(struct xdp_md *ctx)
{
	struct dn_router_config *cfg = get_config();
	struct dn_router_counters *c = get_counters();
	struct forward f = {};

	if (!cfg || !c)
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return pass(c, DN_FROM_LAN, DN_PASS_OTHER), XDP_PASS;
	int v = lan_decide(ctx, data, data_end, data_end - data, dn_mac_equal(eth->h_dest, cfg->lan_mac), 0, cfg,
			   c, &f);
	if (v == V_PASS)
		return XDP_PASS;
	if (v == V_DROP)
		return XDP_DROP;
	if (f.neigh)
		return pass(c, DN_FROM_LAN, DN_PASS_NO_NEIGHBOUR), XDP_PASS;

	long excess = (long)(data_end - data) - (DN_ETH_HLEN + DN_IPV4_HLEN + f.inner_len);
	if (excess > 0 && bpf_xdp_adjust_tail(ctx, -excess))
		return pass(c, DN_FROM_LAN, DN_PASS_ADJUST_FAILED), XDP_PASS;
	if (bpf_xdp_adjust_head(ctx, DN_IPV4_HLEN))
		return pass(c, DN_FROM_LAN, DN_PASS_ADJUST_FAILED), XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	struct iphdr *ip = data + DN_ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return c->drop[DN_DROP_FASTPATH_ERROR]++, XDP_DROP;
	dn_copy_mac(eth->h_dest, f.dmac);
	dn_copy_mac(eth->h_source, f.smac);
	eth->h_proto = bpf_htons(ETH_P_IP);
	dn_decrease_ttl(ip);
	c->traffic[DN_OUTBOUND_PACKETS]++;
	c->traffic[DN_OUTBOUND_BYTES] += f.inner_len;
	return bpf_redirect(f.ifindex, 0);
}

SEC("xdp")
int dn_router_wan_xdp(struct xdp_md *ctx)
{
	struct dn_router_config *cfg = get_config();
	struct dn_router_counters *c = get_counters();
	struct forward f = {};

	if (!cfg || !c)
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return pass(c, DN_FROM_WAN, DN_PASS_OTHER), XDP_PASS;
	int v = wan_decide(ctx, data, data_end, data_end - data, dn_mac_equal(eth->h_dest, cfg->wan_mac), 0, cfg,
			   c, &f);
	if (v == V_PASS)
		return XDP_PASS;
	if (v == V_DROP)
		return XDP_DROP;
	if (f.neigh)
		return pass(c, DN_FROM_WAN, DN_PASS_NO_NEIGHBOUR), XDP_PASS;

	long excess = (long)(data_end - data) - (DN_ETH_HLEN + f.inner_len);
	if (excess > 0 && bpf_xdp_adjust_tail(ctx, -excess))
		return pass(c, DN_FROM_WAN, DN_PASS_ADJUST_FAILED), XDP_PASS;
	if (bpf_xdp_adjust_head(ctx, -DN_IPV4_HLEN))
		return pass(c, DN_FROM_WAN, DN_PASS_ADJUST_FAILED), XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	struct iphdr *outer = data + DN_ETH_HLEN;
	struct iphdr *ip = (void *)(outer + 1);
	if ((void *)(ip + 1) > data_end)
		return c->drop[DN_DROP_FASTPATH_ERROR]++, XDP_DROP;
	dn_copy_mac(eth->h_dest, f.dmac);
	dn_copy_mac(eth->h_source, f.smac);
	eth->h_proto = bpf_htons(ETH_P_IP);
	dn_decrease_ttl(ip);
	write_outer(outer, ip, f.inner_len, cfg->lan_addr, f.host);
	c->traffic[DN_INBOUND_PACKETS]++;
	c->traffic[DN_INBOUND_BYTES] += f.inner_len + DN_IPV4_HLEN;
	return bpf_redirect(f.ifindex, 0);
}
