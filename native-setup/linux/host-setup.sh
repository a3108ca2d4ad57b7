#!/usr/bin/env bash
# Linux set-up of a distnat host: a TUN device carrying the shared public
# address, the default route into it (source = the shared address), and the
# ARP and reverse-path settings a LAN of hosts sharing one address needs. Run
# before `distnat host`; serves the namespace testbed, the Vagrant VMs and real
# hosts. Idempotent: `up` twice changes nothing the second time.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
# shellcheck source=native-setup/linux/common.sh
. "$here/common.sh"

TUN=${DN_TUN:-$TUN_NAME}
MTU=${DN_MTU:-$TUN_MTU}
SHARED=${DN_SHARED_ADDR:-$SHARED_ADDR}
LAN_IF=${DN_LAN_IF:-$LAN_IF}
MULTI_QUEUE=${DN_TUN_MULTI_QUEUE:-0}
STATE_DIR=${DN_STATE_DIR:-/run/distnat/setup}

usage() {
  cat <<USAGE
Usage: $DN_SCRIPT up|down|check [flags]

  up     a persistent TUN device (no packet-information header) with the MTU
         below and the shared address as /32; the default route into it with
         that address as source (more specific routes, such as the LAN's,
         stay where they are); rp_filter loose on the TUN and LAN interfaces;
         accept_local on the TUN, so hairpinned packets from the shared
         address reach local programs;
         arp_ignore=1 and arp_announce=2 on the LAN interface so that no host
         answers or announces the shared address on the LAN. Earlier default
         routes and changed kernel settings are recorded in the state
         directory first.
  down   removes the TUN device (and its routes), restores the recorded
         default routes and kernel settings.
  check  prints what differs from the 'up' state; exit status 1 if anything.

Flags (environment variable in brackets, default after '='):
  --tun NAME          TUN device name [DN_TUN=$TUN_NAME]
  --mtu N             TUN MTU [DN_MTU=$TUN_MTU]: the LAN's 1500 minus the 20-byte
                      outer header the host prepends
  --shared ADDR       the shared public address [DN_SHARED_ADDR=$SHARED_ADDR]
  --lan-if NAME       the interface facing the router [DN_LAN_IF=$LAN_IF]
  --multi-queue       make the device multi-queue [DN_TUN_MULTI_QUEUE=0]
  --state-dir DIR     where original settings are kept [DN_STATE_DIR=/run/distnat/setup]
  --quiet             print only errors

Example (inside the testbed's namespace of host 1):
  ip netns exec dn-h1 native-setup/linux/host-setup.sh up --lan-if $LAN_IF
USAGE
}

QUIET=${DN_QUIET:-0}
dn_parse_args "--tun=TUN --mtu=MTU --shared=SHARED --lan-if=LAN_IF --multi-queue=!MULTI_QUEUE --state-dir=STATE_DIR --quiet=!QUIET" "$@"
DN_QUIET=$QUIET
dn_check_ifname "$TUN"
dn_check_ifname "$LAN_IF"
dn_check_mtu "$MTU"
dn_is_ipv4 "$SHARED" || dn_die "bad shared address '$SHARED'"
dn_need_root
dn_state_init "$STATE_DIR" "host-$TUN"

# A documentation address (RFC 5737) stands for "anywhere on the internet"
# when asking the kernel which route it would take.
PROBE=192.0.2.1

save_default_routes() {
  dn_state_has "saved routes" && return 0
  local line
  while read -r line; do
    [ -n "$line" ] || continue
    # Flags that `ip route show` prints but `ip route add` does not take.
    line=$(sed -E 's/ (linkdown|dead|offload|trap|rt_offload|rt_trap)( |$)/\2/g' <<<"$line")
    dn_state_add "route $line"
    dn_log "saved earlier default route: $line"
  done < <(ip route show default | grep -v " dev $TUN\( \|$\)" || true)
  dn_state_add "saved routes"
}

case $DN_ACTION in
  up)
    ip link show dev "$LAN_IF" >/dev/null 2>&1 || dn_die "no LAN interface $LAN_IF (see --lan-if)"
    dn_tun_up "$TUN" "$MTU" "$MULTI_QUEUE"
    ip addr replace "$SHARED/32" dev "$TUN"
    # Loose: the effective value is max(all, interface), so 2 on the
    # interface is loose whatever conf/all says.
    dn_sysctl_set "net/ipv4/conf/$TUN/rp_filter" 2
    dn_sysctl_set "net/ipv4/conf/$LAN_IF/rp_filter" 2
    # Hairpin: a packet from another host of the LAN arrives through the TUN
    # with the shared address, this host's own address, as its source. The
    # kernel calls that a martian unless accept_local is set. (The router drops
    # WAN packets that claim the shared address as source, so only the router's
    # own hairpin delivers such packets.)
    dn_sysctl_set "net/ipv4/conf/$TUN/accept_local" 1
    dn_sysctl_set "net/ipv4/conf/$LAN_IF/arp_ignore" 1
    dn_sysctl_set "net/ipv4/conf/$LAN_IF/arp_announce" 2
    save_default_routes
    ip route replace default dev "$TUN" src "$SHARED"
    dn_log "up: $TUN mtu $MTU with $SHARED/32, default dev $TUN src $SHARED"
    ;;
  down)
    dn_tun_down "$TUN"
    dn_state_restore
    dn_log "down"
    ;;
  check)
    bad=0
    dn_tun_check "$TUN" "$MTU" || bad=1
    ip -4 addr show dev "$TUN" 2>/dev/null | grep -q "inet $SHARED/32 " || { echo "$TUN lacks $SHARED/32" && bad=1; }
    got=$(ip route get "$PROBE" 2>&1 | head -1) || true
    grep -q "dev $TUN src $SHARED " <<<"$got " || { echo "default route is not dev $TUN src $SHARED: $got" && bad=1; }
    for f in "$TUN/rp_filter 2" "$TUN/accept_local 1" "$LAN_IF/rp_filter 2" "$LAN_IF/arp_ignore 1" "$LAN_IF/arp_announce 2"; do
      read -r key want <<<"$f"
      [ "$(cat "/proc/sys/net/ipv4/conf/$key" 2>/dev/null)" = "$want" ] || { echo "$key is not $want" && bad=1; }
    done
    exit $bad
    ;;
esac
