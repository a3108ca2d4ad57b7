#!/usr/bin/env bash
# Linux set-up of a distnat router: IPv4 forwarding, no reverse-path filter, and
# the TUN device the shared address is routed into. Run before `distnat
# router`; the same script serves the namespace testbed, the Vagrant VM and a
# real gateway. Idempotent: `up` twice changes nothing the second time.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
# shellcheck source=native-setup/linux/common.sh
. "$here/common.sh"

TUN=${DN_TUN:-$TUN_NAME}
MTU=${DN_MTU:-$TUN_MTU}
SHARED=${DN_SHARED_ADDR:-$SHARED_ADDR}
MULTI_QUEUE=${DN_TUN_MULTI_QUEUE:-0}
STATE_DIR=${DN_STATE_DIR:-/run/distnat/setup}

usage() {
  cat <<USAGE
Usage: $DN_SCRIPT up|down|check [flags]

  up     ip_forward=1; rp_filter=0 on every interface (and for new ones); a
         persistent TUN device (no packet-information header) with the MTU
         below; the route <shared address>/32 into it. Records the kernel
         settings it changes in the state directory first.
  down   removes the TUN device (and with it the route) and restores the
         recorded kernel settings.
  check  prints what differs from the 'up' state; exit status 1 if anything.

Flags (environment variable in brackets, default after '='):
  --tun NAME          TUN device name [DN_TUN=$TUN_NAME]
  --mtu N             TUN MTU [DN_MTU=$TUN_MTU]: 1500 of the LAN minus the
                      20-byte outer IPv4 header the router prepends
  --shared ADDR       the shared public address, or several comma-separated
                      (sharedAddresses) [DN_SHARED_ADDR=$SHARED_ADDR]
  --multi-queue       make the device multi-queue, for a router with
                      'workers: N' above 1 (one queue per forwarding worker);
                      'workers: 1' needs it without [DN_TUN_MULTI_QUEUE=0]
  --state-dir DIR     where original settings are kept [DN_STATE_DIR=/run/distnat/setup]
  --quiet             print only errors

Example (inside the testbed's router namespace):
  ip netns exec dn-router native-setup/linux/router-setup.sh up --tun $TUN_NAME --mtu $TUN_MTU
USAGE
}

QUIET=${DN_QUIET:-0}
dn_parse_args "--tun=TUN --mtu=MTU --shared=SHARED --multi-queue=!MULTI_QUEUE --state-dir=STATE_DIR --quiet=!QUIET" "$@"
DN_QUIET=$QUIET
dn_check_ifname "$TUN"
dn_check_mtu "$MTU"
# Several shared addresses (sharedAddresses) come comma-separated; each is routed into the TUN.
IFS=, read -r -a SHARED_LIST <<<"$SHARED"
for a in "${SHARED_LIST[@]}"; do dn_is_ipv4 "$a" || dn_die "bad shared address '$a'"; done
dn_need_root
dn_state_init "$STATE_DIR" "router-$TUN"

# The kernel uses max(conf/all, conf/<if>) as an interface's rp_filter, so
# 'off' needs both all and each interface at 0.
rp_filter_off_everywhere() {
  local d
  for d in /proc/sys/net/ipv4/conf/*/; do
    d=${d%/}
    dn_sysctl_set "net/ipv4/conf/${d##*/}/rp_filter" 0
  done
}

case $DN_ACTION in
  up)
    dn_sysctl_set net/ipv4/ip_forward 1
    dn_tun_up "$TUN" "$MTU" "$MULTI_QUEUE"
    rp_filter_off_everywhere
    for a in "${SHARED_LIST[@]}"; do ip route replace "$a/32" dev "$TUN"; done
    dn_log "up: $TUN mtu $MTU, ${SHARED//,/\/32 and }/32 dev $TUN, forwarding on, rp_filter off"
    ;;
  down)
    dn_tun_down "$TUN"
    dn_state_restore
    dn_log "down"
    ;;
  check)
    bad=0
    [ "$(</proc/sys/net/ipv4/ip_forward)" = 1 ] || { echo "ip_forward is off" && bad=1; }
    for d in /proc/sys/net/ipv4/conf/*/; do
      d=${d%/}
      [ "$(<"$d/rp_filter")" = 0 ] || { echo "rp_filter on for ${d##*/}" && bad=1; }
    done
    dn_tun_check "$TUN" "$MTU" || bad=1
    for a in "${SHARED_LIST[@]}"; do
      ip route show "$a/32" | grep -q "dev $TUN" || { echo "no route $a/32 dev $TUN" && bad=1; }
    done
    exit $bad
    ;;
esac
