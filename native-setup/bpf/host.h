/* The host fast path's maps as both sides see them: host.bpf.c and the
 * host agent's control plane (src/host/ebpf/, which mirrors every layout
 * here; test/unit/host/ebpf-host-layout.test.ts compares the two).
 * Addresses in network order, numbers used as keys in host order.
 */
#ifndef DISTNAT_HOST_H
#define DISTNAT_HOST_H

#include <linux/types.h>

#define DN_HOST_NATIVE 0
#define DN_HOST_TRANSLATE 1

/* One entry, key 0. */
struct dn_host_config {
	__u64 alive_until_ns; /* CLOCK_MONOTONIC; past it everything goes to the agent */
	__u32 shared;
	__u32 lan_addr;       /* this host's LAN address: the tunnel's outer source */
	__u32 router;         /* the router's LAN address */
	__u32 lan_ifindex;
	__u32 tun_ifindex;    /* dn0: what the stack sends there is read here, what comes in is delivered there */
	__u16 lan_mtu;
	__u16 tun_mtu;
	__u32 mode;           /* DN_HOST_NATIVE or DN_HOST_TRANSLATE */
	__u32 ipsec;          /* non-zero: the agent protects and verifies, everything goes to it */
	__u32 pad;
};

enum dn_host_traffic {
	DN_HOST_OUT_PACKETS, /* encapsulated to the router */
	DN_HOST_OUT_BYTES,   /* outer header included */
	DN_HOST_IN_PACKETS,  /* delivered to the stack */
	DN_HOST_IN_BYTES,    /* inner datagram */
	DN_HOST_TRAFFIC_COUNT,
};

/* Why a packet was left to the agent (the TUN on the way out, the raw
 * socket on the way in) unchanged, per direction. */
enum dn_host_pass {
	DN_HOST_PASS_OTHER,       /* not the tunnel's (LAN traffic, PAP, ARP) */
	DN_HOST_PASS_STALE,
	DN_HOST_PASS_IPSEC,       /* the agent protects or verifies it */
	DN_HOST_PASS_GSO,         /* a super-packet: the agent segments it */
	DN_HOST_PASS_MALFORMED,
	DN_HOST_PASS_OPTIONS,
	DN_HOST_PASS_FRAGMENT,
	DN_HOST_PASS_NOT_SHARED,  /* source (out) or destination (in) not the shared address */
	DN_HOST_PASS_NOT_ROUTER,  /* tunnelled by someone other than the router */
	DN_HOST_PASS_TOO_BIG,     /* the agent answers or fragments */
	DN_HOST_PASS_TCP_CONTROL, /* SYN, FIN or RST: the agent clamps the MSS and follows the connection */
	DN_HOST_PASS_ICMP,        /* identifiers and quoted datagrams are the agent's */
	DN_HOST_PASS_PROTOCOL,
	DN_HOST_PASS_UNLEASED,    /* native: a source port outside the leased blocks */
	DN_HOST_PASS_NO_MAPPING,  /* translate: no established translation yet */
	DN_HOST_PASS_NO_ROUTE,
	DN_HOST_PASS_ADJUST_FAILED,
	DN_HOST_PASS_COUNT,
};

struct dn_host_counters {
	__u64 traffic[DN_HOST_TRAFFIC_COUNT];
	__u64 error;              /* a helper failed after the packet was changed: dropped */
	__u64 pass[2][DN_HOST_PASS_COUNT]; /* [0] outbound, [1] inbound */
};

/* Translations, indexed plane * 65536 + port (plane 0 TCP, 1 UDP):
 * out_port[local] = leased, in_port[leased] = local, 0 = none. */
#define DN_HOST_PLANES 2

#endif
