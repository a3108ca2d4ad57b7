/* The router fast path's maps as both sides see them: the BPF programs in
 * router.bpf.c and the control plane in src/router/ebpf/ (which mirrors
 * every layout and index here; test/unit/router/ebpf-layout.test.ts reads
 * this file and fails when the two drift apart).
 *
 * Addresses are stored as they travel (network byte order), so a program
 * compares them with header fields without swapping; map keys that are
 * numbers (ports, SPIs, slots) are in host order.
 */
#ifndef DISTNAT_ROUTER_H
#define DISTNAT_ROUTER_H

#include <linux/types.h>

/* The most shared addresses a router serves (the configuration's limit). */
#define DN_MAX_SHARED 16

/* One entry, key 0. Written whole by the control plane. */
struct dn_router_config {
	__u64 alive_until_ns; /* CLOCK_MONOTONIC; past it everything goes to the slow path */
	__u32 shared_count;   /* how many of shared[] are the router's, 1..DN_MAX_SHARED */
	__u32 lan_addr;       /* the router's LAN address: outer destination in, outer source out */
	__u32 lan_ifindex;
	__u32 wan_ifindex;
	__u32 tun_ifindex;    /* the slow path's TUN: inner datagrams are routed as if read from it */
	__u32 spi_shift;      /* spi_blocks is keyed by spi >> spi_shift */
	__u16 tun_mtu;
	__u16 lan_mtu;
	__u8 lan_mac[6];      /* XDP only: frames for other MACs are not ours */
	__u8 wan_mac[6];
	/* The shared addresses, in the configuration's order: an address's index
	 * makes its ports' slots (below). A scan of a few words beats a hash
	 * lookup, and a router with one address compares one. */
	__u32 shared[DN_MAX_SHARED];
	__u8 pad[8];
};

/* Traffic the fast path took, as the slow path names it (docs/router.md). */
enum dn_traffic {
	DN_LAN_RX_PACKETS,   /* IP-in-IP taken (forwarded or dropped), outer header included */
	DN_LAN_RX_BYTES,
	DN_OUTBOUND_PACKETS, /* inner datagrams sent to the WAN */
	DN_OUTBOUND_BYTES,
	DN_WAN_RX_PACKETS,   /* datagrams for a shared address taken */
	DN_WAN_RX_BYTES,
	DN_INBOUND_PACKETS,  /* tunnelled to hosts, outer header included */
	DN_INBOUND_BYTES,
	DN_TRAFFIC_COUNT,
};

/* Packets the fast path refused: the slow path's drop reasons, where the
 * fast path is as sure as the slow path would be, plus its own failure. */
enum dn_drop {
	DN_DROP_NOT_SHARED_SOURCE,
	DN_DROP_SPOOFED_PORT,
	DN_DROP_NO_LEASE,
	DN_DROP_SPI_WITHDRAWN,  /* ESP in UDP (RFC 3948) on an SA of a withdrawn SPI block */
	DN_DROP_FASTPATH_ERROR, /* a helper failed after the packet was changed */
	DN_DROP_COUNT,
};

/* Why a packet went on to the kernel, and so to the slow path, unchanged.
 * Counted per direction (LAN ingress, WAN ingress). */
enum dn_pass {
	DN_PASS_OTHER,           /* not tunnelled to the router / not for a shared address */
	DN_PASS_STALE,           /* the control plane's heartbeat ran out */
	DN_PASS_GSO,             /* a GSO super-packet */
	DN_PASS_OUTER_MALFORMED, /* outer header broken (the kernel or the slow path drops it) */
	DN_PASS_OUTER_OPTIONS,
	DN_PASS_OUTER_FRAGMENT,
	DN_PASS_MALFORMED,       /* the datagram's own header broken */
	DN_PASS_OPTIONS,
	DN_PASS_FRAGMENT,
	DN_PASS_HAIRPIN,
	DN_PASS_SHARED_SOURCE,   /* from the WAN with a shared address as source */
	DN_PASS_TTL,             /* TTL would run out: the kernel sends time exceeded */
	DN_PASS_TRUNCATED,
	DN_PASS_ICMP,            /* ICMP errors and types without an identifier */
	DN_PASS_PROTOCOL,        /* not TCP, UDP, ICMP, ESP or AH */
	DN_PASS_NO_OWNER,
	DN_PASS_RESERVED_SPI,
	DN_PASS_TOO_BIG,         /* over an MTU: the kernel fragments or answers */
	DN_PASS_NO_ROUTE,        /* the route lookup did not give a unicast next hop */
	DN_PASS_OTHER_INTERFACE, /* routed out of an interface the fast path does not serve */
	DN_PASS_NO_NEIGHBOUR,    /* XDP: next hop's MAC unknown, the kernel resolves it */
	DN_PASS_ADJUST_FAILED,   /* making or removing room failed before anything changed */
	DN_PASS_COUNT,
};

enum dn_direction {
	DN_FROM_LAN,
	DN_FROM_WAN,
};

/* One per-CPU entry, key 0. */
struct dn_router_counters {
	__u64 traffic[DN_TRAFFIC_COUNT];
	__u64 drop[DN_DROP_COUNT];
	__u64 pass[2][DN_PASS_COUNT];
};

/* Ports are slots, as in the slow path's tables and the leases
 * (src/util/block.ts): slot = address index * 65536 + port, so the same port
 * on two shared addresses has two owners, and the first address's slots are
 * its ports. port_owner has 65536 entries per address.
 *
 * last_seen: key = (address index * DN_PLANES + plane) * 65536 + port; value =
 * CLOCK_MONOTONIC (coarse) of the last packet forwarded in either direction
 * (0 = never). The first address's stamps are where a one-address router
 * keeps them. */
#define DN_PORTS 65536
#define DN_PLANE_TCP 0
#define DN_PLANE_UDP 1
#define DN_PLANE_ICMP 2
#define DN_PLANES 3
/* Stamps closer together than this are not rewritten: fewer cache lines
 * bounced between CPUs, and FIG. 12 keeps milliseconds anyway. */
#define DN_STAMP_GRANULE_NS (1ULL << 24)

/* withdrawn_spis: SPI blocks the router took back and has not leased again,
 * as the slow path remembers them (src/router/data-path/tables/withdrawn-spis.ts).
 * key = spi >> DN_WITHDRAWN_SHIFT; value = bit (spi & 63) set for each
 * withdrawn SPI of those 64. A fixed granule rather than spi_shift: a
 * bit per SPI takes any block, aligned or not, in one lookup. */
#define DN_WITHDRAWN_SHIFT 6
/* UDP from this source port carries ESP (RFC 3948), a zero SPI being the
 * non-ESP marker (IKE). */
#define DN_NATT_PORT 4500

/* outbound_sa: who sent the last ESP/AH packet of an SA to a remote, for the
 * slow path's ICMP errors that quote such packets. */
struct dn_sa_key {
	__u32 remote;
	__u32 spi;   /* host order, like every number used as a key */
	__u32 proto; /* 50 or 51 */
};

struct dn_sa_value {
	__u32 host;
	__u32 pad;
	__u64 last_ns;
};

#endif
