#!/usr/bin/env bash
# Set-up of the remote server of the testbed and the Vagrant topology: a route
# to the shared address through the distnat router's WAN address. It stands in
# for the internet's routing, which on a real network carries the shared
# address to the gateway without any set-up on the remote side. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
# shellcheck source=native-setup/linux/common.sh
. "$here/common.sh"

SHARED=${DN_SHARED_ADDR:-$SHARED_ADDR}
GATEWAY=${DN_GATEWAY:-$ROUTER_WAN}

usage() {
  cat <<USAGE
Usage: $DN_SCRIPT up|down|check [flags]

  up     route <shared address>/32 via the router's WAN address
  down   removes that route
  check  prints what differs from the 'up' state; exit status 1 if anything.

Flags (environment variable in brackets, default after '='):
  --shared ADDR       the shared public address [DN_SHARED_ADDR=$SHARED_ADDR]
  --gateway ADDR      the distnat router's WAN address [DN_GATEWAY=$ROUTER_WAN]
  --quiet             print only errors
USAGE
}

QUIET=${DN_QUIET:-0}
dn_parse_args "--shared=SHARED --gateway=GATEWAY --quiet=!QUIET" "$@"
DN_QUIET=$QUIET
dn_is_ipv4 "$SHARED" || dn_die "bad shared address '$SHARED'"
dn_is_ipv4 "$GATEWAY" || dn_die "bad gateway address '$GATEWAY'"
dn_need_root

case $DN_ACTION in
  up)
    # A route via the gateway at any metric is kept as it is: `distnat peer`
    # moves it to metric 100 and routes the shared address into its TUN,
    # which a repeated `up` must not undo.
    if ip route show "$SHARED/32" | grep -q "via $GATEWAY "; then
      dn_log "up: $SHARED/32 via $GATEWAY (already)"
    else
      ip route replace "$SHARED/32" via "$GATEWAY"
      dn_log "up: $SHARED/32 via $GATEWAY"
    fi
    ;;
  down)
    if ip route show "$SHARED/32" | grep -q "via $GATEWAY "; then
      ip route del "$SHARED/32" via "$GATEWAY"
    fi
    dn_log "down"
    ;;
  check)
    ip route show "$SHARED/32" | grep -q "via $GATEWAY " || { echo "no route $SHARED/32 via $GATEWAY" && exit 1; }
    ;;
esac
