#!/usr/bin/env bash
# Installs distnat from this checkout on a Debian 12 machine (a VM of the
# Vagrant topology or a real router or host): /opt/distnat, its dependencies,
# the `distnat` command, a default configuration in /etc/distnat/ and the
# systemd unit of the machine's role. Safe to run again: it updates the code
# and the unit, and keeps a configuration that is already there.
set -euo pipefail

CHECKOUT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
ME=install.sh
# The defaults below are the reference topology's.
# shellcheck source=native-setup/topology.env
. "$CHECKOUT/native-setup/topology.env"

ROLE=
ROOT=
MODE=
LAN_ADDR=
LAN_IF=
ROUTER_ADDR=$ROUTER_LAN
SHARED=$SHARED_ADDR
GATEWAY=$ROUTER_WAN
WITH_NODE=1
WITH_DEPS=1
FORCE_CONFIG=0
START=0
USER_NAME=distnat
# node >= this (package.json "engines"); Debian 12's own nodejs is 18.
NODE_MAJOR=20
NODE_MINOR=19

usage() {
  cat <<USAGE
Usage: native-setup/install.sh router|host|server [options]   (as root)

Installs distnat from this checkout:
  1. Node.js >= $NODE_MAJOR.$NODE_MINOR from the NodeSource apt repository, unless a
     recent enough node is on PATH; g++, make and python3 for the native addon,
     clang, llvm and libbpf-dev for its BPF programs; and (also with
     --no-node) libbpf1 to load them and iproute2
  2. /opt/distnat: a copy of the checkout (without .git, node_modules and
     build output) or, with --link, a symbolic link to it
  3. scripts/setup in /opt/distnat: Debian packages, npm dependencies, the
     native addon
  4. /usr/local/bin/distnat -> /opt/distnat/bin/distnat
  5. the system user and group '$USER_NAME' the daemons run as
  6. /etc/distnat/ROLE.yaml and ROLE.env from native-setup/config/, with the
     addresses below filled in (an existing file is kept; --force-config)
  7. /etc/systemd/system/distnat-ROLE.service, enabled (started with --start)

Roles: router (distnat router), host (distnat host), server (the test
topology's remote server: only a route to the shared address).

Options:
  --lan-address ADDR  this machine's LAN address: the router's (default
                      $ROUTER_ADDR) or the host's (required for a host,
                      unless --lan-if names an interface that has one)
  --lan-if NAME       host: the interface facing the router, for
                      host-setup.sh (default: the one holding --lan-address)
  --router ADDR       host: the router's LAN address [$ROUTER_ADDR]
  --shared ADDR       the shared public address [$SHARED]
  --gateway ADDR      server: the router's WAN address [$GATEWAY]
  --copy | --link     copy the checkout to /opt/distnat (default) or link it
                      (the daemons then run what the checkout holds)
  --no-node           do not install Node.js or the build tools
  --no-deps           do not run scripts/setup
  --force-config      replace an existing /etc/distnat/ROLE.yaml and ROLE.env
  --start             start (or restart) the unit now
  --root DIR          install below DIR instead of /: files only, no
                      packages, user or systemctl (tests, packaging)
  -h, --help          this text

Examples:
  native-setup/install.sh router --start
  native-setup/install.sh host --lan-address $H1_LAN --start
  native-setup/install.sh server --gateway $ROUTER_WAN --start
USAGE
}

die() {
  echo "$ME: $*" >&2
  exit 1
}
say() { echo "$ME: $*"; }

is_ipv4() {
  local IFS=. a b c d
  [[ $1 =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || return 1
  read -r a b c d <<<"$1"
  ((a <= 255 && b <= 255 && c <= 255 && d <= 255))
}

while (($#)); do
  arg=$1
  shift
  case $arg in
    -h | --help)
      usage
      exit 0
      ;;
    router | host | server)
      [ -z "$ROLE" ] || die "more than one role: $ROLE and $arg"
      ROLE=$arg
      ;;
    --lan-address | --lan-if | --router | --shared | --gateway | --root)
      (($#)) || die "$arg needs a value"
      case $arg in
        --lan-address) LAN_ADDR=$1 ;;
        --lan-if) LAN_IF=$1 ;;
        --router) ROUTER_ADDR=$1 ;;
        --shared) SHARED=$1 ;;
        --gateway) GATEWAY=$1 ;;
        --root) ROOT=$1 ;;
      esac
      shift
      ;;
    --copy) MODE=copy ;;
    --link) MODE=link ;;
    --no-node) WITH_NODE=0 ;;
    --no-deps) WITH_DEPS=0 ;;
    --force-config) FORCE_CONFIG=1 ;;
    --start) START=1 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done
[ -n "$ROLE" ] || die "name a role: router, host or server (try --help)"
MODE=${MODE:-copy}
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=
fi
[ -n "$ROOT" ] || [ "$(id -u)" = 0 ] || die "must run as root (or with --root DIR)"

for pair in "router:$ROUTER_ADDR" "shared:$SHARED" "gateway:$GATEWAY" ${LAN_ADDR:+"lan-address:$LAN_ADDR"}; do
  is_ipv4 "${pair#*:}" || die "--${pair%%:*}: not an IPv4 address: ${pair#*:}"
done
[ -z "$LAN_IF" ] || [[ $LAN_IF =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "--lan-if: bad interface name '$LAN_IF'"

# The LAN address and interface: given, or one found from the other.
if [ "$ROLE" = router ]; then
  LAN_ADDR=${LAN_ADDR:-$ROUTER_ADDR}
elif [ "$ROLE" = host ]; then
  if [ -z "$LAN_ADDR" ] && [ -n "$LAN_IF" ] && [ -z "$ROOT" ]; then
    LAN_ADDR=$(ip -o -4 addr show dev "$LAN_IF" 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4; exit }')
  fi
  [ -n "$LAN_ADDR" ] || die "a host needs --lan-address (its address on the router's LAN)"
  if [ -z "$LAN_IF" ] && [ -z "$ROOT" ]; then
    LAN_IF=$(ip -o -4 addr show | awk -v a="$LAN_ADDR" '{ split($4, p, "/") } p[1] == a { print $2; exit }')
    [ -n "$LAN_IF" ] || die "no interface has the address $LAN_ADDR: configure the LAN first, or pass --lan-if"
  fi
fi

OPT=$ROOT/opt/distnat
ETC=$ROOT/etc/distnat
UNITS=$ROOT/etc/systemd/system
BIN=$ROOT/usr/local/bin

# --- 1. Node.js and build tools ----------------------------------------------

node_recent_enough() {
  command -v node >/dev/null 2>&1 &&
    node -e "const [a, b] = process.versions.node.split('.').map(Number);
      process.exit(a > $NODE_MAJOR || (a === $NODE_MAJOR && b >= $NODE_MINOR) ? 0 : 1)"
}

apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing Debian packages: ${missing[*]}"
  # A fresh machine may have no package lists yet.
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -q && APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_node() {
  if node_recent_enough; then
    say "node $(node --version) is recent enough"
  else
    # NodeSource's documented set-up: their signing key and a "nodistro" suite.
    say "installing Node.js $NODE_MAJOR from deb.nodesource.com"
    apt-get update -q
    apt_install ca-certificates curl gnupg
    install -d -m 0755 /etc/apt/keyrings
    curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key |
      gpg --dearmor --yes -o /etc/apt/keyrings/nodesource.gpg
    echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_$NODE_MAJOR.x nodistro main" \
      >/etc/apt/sources.list.d/nodesource.list
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs
    node_recent_enough || die "node $(node --version 2>/dev/null) is still older than $NODE_MAJOR.$NODE_MINOR"
  fi
  # node-gyp builds native-setup/addon during npm ci, and with it the BPF
  # programs of the eBPF data path (clang, libbpf-dev).
  apt_install g++ make python3 clang llvm libbpf-dev
}

# What the daemons need at run time, also with --no-node: libbpf1 loads the
# eBPF data path (without it the router forwards on the TUN path and says
# so), iproute2 is what the set-up scripts and the units call.
install_runtime() {
  apt_install libbpf1 iproute2
}

# --- 2. /opt/distnat -----------------------------------------------------------

# Build output and dependencies are made for this machine by scripts/setup,
# never copied from the checkout (which may have been built elsewhere).
EXCLUDES=(.git .vagrant node_modules native-setup/addon/build run)

install_tree() {
  mkdir -p "$(dirname "$OPT")"
  if [ "$MODE" = link ]; then
    [ "$OPT" != "$CHECKOUT" ] || return 0
    if [ -d "$OPT" ] && [ ! -L "$OPT" ]; then die "$OPT is a directory: remove it to link the checkout instead"; fi
    ln -sfn "$CHECKOUT" "$OPT"
    say "$OPT -> $CHECKOUT"
    return
  fi
  if [ "$(readlink -f "$OPT" 2>/dev/null)" = "$CHECKOUT" ]; then
    say "$OPT is this checkout already"
    return
  fi
  [ ! -L "$OPT" ] || rm -f "$OPT"
  mkdir -p "$OPT"
  if command -v rsync >/dev/null 2>&1; then
    local ex=() e
    for e in "${EXCLUDES[@]}"; do ex+=(--exclude "/$e"); done
    rsync -a --no-owner --no-group --delete "${ex[@]}" "$CHECKOUT/" "$OPT/"
  else
    local ex=() e
    for e in "${EXCLUDES[@]}"; do ex+=(--exclude "./$e"); done
    tar -C "$CHECKOUT" "${ex[@]}" -cf - . | tar -C "$OPT" --no-same-owner -xf -
  fi
  say "copied the checkout to $OPT"
}

# --- 5. the service user ---------------------------------------------------

install_user() {
  if getent passwd "$USER_NAME" >/dev/null; then return 0; fi
  useradd --system --user-group --home-dir /var/lib/distnat --no-create-home \
    --shell /usr/sbin/nologin --comment "distnat daemons" "$USER_NAME"
  say "created system user $USER_NAME"
}

# --- 6. configuration ------------------------------------------------------

# set_key FILE KEY VALUE: replaces the value of a top-level "KEY: ..." (YAML)
# or "KEY=..." (environment file) line.
set_key() {
  local file=$1 key=$2 value=$3
  grep -qE "^$key(: |=)" "$file" || die "internal: no $key in $file"
  sed -i -E "s#^($key)(: |=).*#\1\2$value#" "$file"
}

install_config() {
  local src=$CHECKOUT/native-setup/config yaml=$ETC/$ROLE.yaml env=$ETC/$ROLE.env tmp
  mkdir -p "$ETC"
  chmod 0755 "$ETC"
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '$tmp'" RETURN
  if [ "$ROLE" != server ]; then
    cp "$src/$ROLE.yaml" "$tmp/$ROLE.yaml"
    set_key "$tmp/$ROLE.yaml" sharedAddress "$SHARED"
    set_key "$tmp/$ROLE.yaml" lanAddress "$LAN_ADDR"
    [ "$ROLE" != host ] || set_key "$tmp/$ROLE.yaml" router "$ROUTER_ADDR"
  fi
  cp "$src/$ROLE.env" "$tmp/$ROLE.env"
  set_key "$tmp/$ROLE.env" DN_SHARED_ADDR "$SHARED"
  [ "$ROLE" != host ] || [ -z "$LAN_IF" ] || set_key "$tmp/$ROLE.env" DN_LAN_IF "$LAN_IF"
  [ "$ROLE" != server ] || set_key "$tmp/$ROLE.env" DN_GATEWAY "$GATEWAY"

  local f dest
  for f in "$tmp"/*; do
    dest=$ETC/$(basename "$f")
    if [ -e "$dest" ] && [ "$FORCE_CONFIG" = 0 ]; then
      cmp -s "$f" "$dest" || say "kept $dest (it differs from the default; --force-config replaces it)"
      continue
    fi
    install -m 0644 "$f" "$dest"
    say "wrote $dest"
  done
  # The daemon reads its YAML file as its own user; nobody else needs to.
  if [ -z "$ROOT" ] && [ -e "$yaml" ]; then
    chown "root:$USER_NAME" "$yaml"
    chmod 0640 "$yaml"
  fi
}

# --- 7. the unit -----------------------------------------------------------

install_unit() {
  local unit=distnat-$ROLE.service
  mkdir -p "$UNITS"
  install -m 0644 "$CHECKOUT/native-setup/systemd/$unit" "$UNITS/$unit"
  say "installed $UNITS/$unit"
  [ -z "$ROOT" ] || return 0
  systemctl daemon-reload
  systemctl enable "$unit"
  if [ "$START" = 1 ]; then
    systemctl restart "$unit"
    say "started $unit (journalctl -u $unit)"
  else
    say "enabled $unit; start it with: systemctl start $unit"
  fi
}

# --- main ------------------------------------------------------------------

if [ -z "$ROOT" ] && [ "$WITH_NODE" = 1 ]; then install_node; fi
[ -n "$ROOT" ] || install_runtime
install_tree
if [ -z "$ROOT" ] && [ "$WITH_DEPS" = 1 ]; then
  say "running scripts/setup in $OPT"
  (cd "$OPT" && scripts/setup)
fi
mkdir -p "$BIN"
# Absolute inside the installed system: bin/distnat finds its checkout through it.
ln -sfn /opt/distnat/bin/distnat "$BIN/distnat"
say "$BIN/distnat -> /opt/distnat/bin/distnat"
[ -n "$ROOT" ] || install_user
install_config
install_unit
if [ -z "$ROOT" ] && [ "$WITH_DEPS" = 1 ] && ! distnat --help >/dev/null 2>&1; then
  die "/usr/local/bin/distnat does not run: see 'distnat --help'"
fi
say "done: role $ROLE${LAN_ADDR:+, LAN address $LAN_ADDR}${LAN_IF:+ on $LAN_IF}, shared address $SHARED"
