# shellcheck shell=bash
# Helpers shared by router-setup.sh, host-setup.sh and server-setup.sh.
# Sourced, never run. The scripts run the same way on a VM, a real machine or
# inside one of the testbed's namespaces (`ip netns exec NS script up`).
#
# Every change a script makes to a kernel setting is recorded first in a state
# file (the value it had before), so that `down` puts the machine back as it
# found it, and a second `up` never overwrites the recorded original.

DN_SCRIPT=${DN_SCRIPT:-$(basename "$0")}

# The defaults of the scripts' flags are the reference topology's.
# shellcheck source=native-setup/topology.env
. "$(dirname "${BASH_SOURCE[0]}")/../topology.env"

dn_die() {
  echo "$DN_SCRIPT: $*" >&2
  exit 1
}

dn_log() {
  [ "${DN_QUIET:-0}" = 1 ] || echo "$DN_SCRIPT: $*"
}

dn_need_root() {
  [ "$(id -u)" = 0 ] || dn_die "must run as root"
}

# dn_parse_args "SPEC" ARGS...: sets DN_ACTION (up, down or check) and the
# variables SPEC names. SPEC is a list of --flag=VARIABLE words; a flag written
# --flag=!VARIABLE takes no value and sets VARIABLE=1. Both `--flag value` and
# `--flag=value` work. --help calls the script's usage function.
dn_parse_args() {
  local spec=$1 arg flag val has word var found
  shift
  DN_ACTION=
  while (($#)); do
    arg=$1
    shift
    case $arg in
      -h | --help)
        usage
        exit 0
        ;;
      up | down | check)
        [ -z "$DN_ACTION" ] || dn_die "more than one action: $DN_ACTION and $arg"
        DN_ACTION=$arg
        continue
        ;;
      --*=*) flag=${arg%%=*} val=${arg#*=} has=1 ;;
      --*) flag=$arg val= has=0 ;;
      *) dn_die "unknown argument '$arg' (try --help)" ;;
    esac
    found=
    for word in $spec; do
      [ "${word%%=*}" = "$flag" ] || continue
      found=1
      var=${word#*=}
      if [ "${var:0:1}" = '!' ]; then
        [ $has = 0 ] || dn_die "$flag takes no value"
        printf -v "${var:1}" 1
      else
        if [ $has = 0 ]; then
          (($#)) || dn_die "$flag needs a value"
          val=$1
          shift
        fi
        printf -v "$var" '%s' "$val"
      fi
    done
    [ -n "$found" ] || dn_die "unknown flag '$flag' (try --help)"
  done
  [ -n "$DN_ACTION" ] || dn_die "say up, down or check (try --help)"
}

dn_is_ipv4() {
  local IFS=. a b c d
  [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || return 1
  read -r a b c d <<<"$1"
  ((a <= 255 && b <= 255 && c <= 255 && d <= 255))
}

dn_check_ifname() {
  [[ $1 =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || dn_die "bad interface name '$1' (1-15 characters of A-Z a-z 0-9 _ . -)"
}

dn_check_mtu() {
  [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 576 && $1 <= 65535)) || dn_die "bad MTU '$1' (576-65535)"
}

# --- state ---------------------------------------------------------------

# dn_state_init DIR NAME: the state file of one script and TUN device.
dn_state_init() {
  DN_STATE_FILE="$1/$2.state"
}

dn_state_has() {
  [ -f "$DN_STATE_FILE" ] && grep -qxF -- "$1" <(cut -d' ' -f1-2 "$DN_STATE_FILE")
}

dn_state_add() {
  mkdir -p "$(dirname "$DN_STATE_FILE")"
  printf '%s\n' "$*" >>"$DN_STATE_FILE"
}

# dn_sysctl_set PATH VALUE with PATH below /proc/sys, written with slashes so
# that interface names containing dots (eth0.100) stay unambiguous.
dn_sysctl_set() {
  local path=/proc/sys/$1 want=$2 old
  [ -w "$path" ] || dn_die "no kernel setting $1"
  old=$(<"$path")
  [ "$old" = "$want" ] && return 0
  dn_state_has "sysctl $1" || dn_state_add "sysctl $1 $old"
  echo "$want" >"$path"
  dn_log "$1: $old -> $want"
}

# Restores what the state file recorded, newest first, then forgets it.
dn_state_restore() {
  [ -f "$DN_STATE_FILE" ] || return 0
  local kind key rest
  while read -r kind key rest; do
    case $kind in
      sysctl)
        if [ -w "/proc/sys/$key" ]; then
          echo "$rest" >"/proc/sys/$key" && dn_log "$key: restored $rest"
        fi
        ;;
      route)
        # shellcheck disable=SC2086 # the saved route is a list of ip(8) words
        if ip route add $key $rest 2>/dev/null; then dn_log "route restored: $key $rest"; fi
        ;;
    esac
  done < <(tac "$DN_STATE_FILE")
  rm -f "$DN_STATE_FILE"
}

# --- TUN -----------------------------------------------------------------

# dn_tun_up NAME MTU MULTI_QUEUE(0|1): a persistent TUN device (IFF_TUN, no
# packet information header), administratively up. A device of the same name
# with the wrong kind or queue mode is replaced: the kernel refuses to attach
# when the attaching process's IFF_MULTI_QUEUE differs from the device's.
dn_tun_up() {
  local name=$1 mtu=$2 mq=$3 details
  if details=$(ip -d link show dev "$name" 2>/dev/null); then
    local ok=1
    grep -q 'tun type tun ' <<<"$details" || ok=0
    grep -q ' persist on' <<<"$details" || ok=0
    if [ "$mq" = 1 ]; then grep -q ' multi_queue ' <<<"$details" || ok=0; else
      ! grep -q ' multi_queue ' <<<"$details" || ok=0
    fi
    if [ $ok = 0 ]; then
      dn_log "replacing $name: not a persistent TUN device of the wanted queue mode"
      ip link del dev "$name"
      details=
    fi
  fi
  if [ -z "$details" ]; then
    if [ "$mq" = 1 ]; then ip tuntap add dev "$name" mode tun multi_queue; else ip tuntap add dev "$name" mode tun; fi
    dn_log "created TUN device $name"
  fi
  # 4096, not the default 500: a burst the daemon has not read yet waits in
  # this queue, and every TCP retransmit measured through distnat was a drop
  # here (docs/benchmarks.md).
  ip link set dev "$name" mtu "$mtu" txqueuelen "${DN_TUN_TXQUEUELEN:-4096}" up
}

# Deleting through rtnetlink works even while a process holds the device open
# (`ip tuntap del` would fail with EBUSY then).
dn_tun_down() {
  if ip link show dev "$1" >/dev/null 2>&1; then
    ip link del dev "$1"
    dn_log "removed TUN device $1"
  fi
}

# dn_tun_check NAME MTU: prints problems, returns 1 if any.
dn_tun_check() {
  local details bad=0
  if ! details=$(ip -d link show dev "$1" 2>/dev/null); then
    echo "no device $1"
    return 1
  fi
  grep -q 'tun type tun ' <<<"$details" || { echo "$1 is not a TUN device" && bad=1; }
  grep -q " mtu $2 " <<<"$details" || { echo "$1 MTU is not $2" && bad=1; }
  grep -qE '[<,]UP[,>]' <<<"$details" || { echo "$1 is down" && bad=1; }
  return $bad
}
