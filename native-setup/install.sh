#!/usr/bin/env bash
# Installs distnat on a Debian 12 machine (a VM of the Vagrant topology or a
# real router, host or peer): what the daemons need at run time, the built
# package in /opt/distnat, the `distnat` command, a default configuration in
# /etc/distnat/ and the systemd unit of the machine's role. Never a checkout:
# the package is what `npm pack` makes, given with --package or built here
# from this checkout. Safe to run again: it replaces the package and the unit,
# and keeps a configuration that is already there.
set -euo pipefail

SOURCE=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
ME=install.sh
# The defaults below are the reference topology's.
# shellcheck source=native-setup/topology.env
. "$SOURCE/native-setup/topology.env"

ROLE=
ROOT=
PACKAGE=
LAN_ADDR=
LAN_IF=
WAN_IF=eth1
ROUTER_ADDR=$ROUTER_LAN
SHARED=$SHARED_ADDR
GATEWAY=$ROUTER_WAN
WITH_NODE=1
FORCE_CONFIG=0
START=0
USER_NAME=distnat
# node >= this (package.json "engines"); Debian 12's own nodejs is 18.
NODE_MAJOR=20
NODE_MINOR=19
# What a router, host or peer needs at run time, and nothing else: iproute2
# for the set-up scripts and the daemons' `ip` calls; g++, make and python3
# for node-gyp, which builds the native addon for this machine's Node.js.
# The tools of the tests and benchmarks (tshark, scapy, iperf3, strongSwan,
# vagrant) belong to scripts/setup, on a developer's machine.
# g++, make, python3: node-gyp builds the native addon; clang, llvm, libbpf-dev:
# the BPF programs built with it; libbpf1 loads them.
RUNTIME_PACKAGES=(iproute2 g++ make python3 clang llvm libbpf-dev libbpf1)

usage() {
  cat <<USAGE
Usage: native-setup/install.sh router|host|peer|server [options]   (as root)

Installs distnat:
  1. Node.js >= $NODE_MAJOR.$NODE_MINOR from the NodeSource apt repository, unless a
     recent enough node is on PATH; and the Debian packages a daemon needs at
     run time: ${RUNTIME_PACKAGES[*]}
  2. the package (npm pack's tarball): --package FILE, or built from this
     checkout (npm ci and npm pack in a scratch directory, removed after)
  3. /opt/distnat: the package with its run-time dependencies at the versions
     of its lock file and the native addon built for this machine
     (native-setup/install-package.sh); /usr/local/bin/distnat links to it
  4. the system user and group '$USER_NAME' the daemons run as
  5. /etc/distnat/ROLE.yaml and ROLE.env from native-setup/config/, with the
     addresses below filled in (an existing file is kept; --force-config)
  6. /etc/systemd/system/distnat-ROLE.service, enabled (started with --start)

Roles: router (distnat router), host (distnat host), peer (distnat peer: the
far end of the hosts' IPsec SAs on a machine with its own address), server
(the test topology's remote server: only a route to the shared address).

Options:
  --lan-address ADDR  this machine's LAN address: the router's (default
                      $ROUTER_ADDR) or the host's (required for a host,
                      unless --lan-if names an interface that has one)
  --lan-if NAME       host: the interface facing the router, for
                      host-setup.sh (default: the one holding --lan-address)
  --router ADDR       host: the router's LAN address [$ROUTER_ADDR]
  --shared ADDR       the shared public address [$SHARED]
  --gateway ADDR      server, peer: the router's WAN address [$GATEWAY]
  --wan-if NAME       peer: the interface towards the router [$WAN_IF]
  --package FILE      install this package (distnat-VERSION.tgz from
                      \`npm pack\`) instead of building one from the checkout
  --no-node           do not install Node.js or the Debian packages
  --force-config      replace an existing /etc/distnat/ROLE.yaml and ROLE.env
  --start             start (or restart) the unit now
  --root DIR          install below DIR instead of /: files only (the
                      configuration, the unit, the command's link and, with
                      --package, the package's files without dependencies or
                      addon); no packages, user or systemctl (tests, packaging)
  -h, --help          this text

Examples:
  native-setup/install.sh router --start
  native-setup/install.sh host --lan-address $H1_LAN --start
  native-setup/install.sh host --package distnat-0.1.0.tgz --lan-if eth1 --start
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
    router | host | peer | server)
      [ -z "$ROLE" ] || die "more than one role: $ROLE and $arg"
      ROLE=$arg
      ;;
    --lan-address | --lan-if | --wan-if | --router | --shared | --gateway | --root | --package)
      (($#)) || die "$arg needs a value"
      case $arg in
        --lan-address) LAN_ADDR=$1 ;;
        --lan-if) LAN_IF=$1 ;;
        --wan-if) WAN_IF=$1 ;;
        --router) ROUTER_ADDR=$1 ;;
        --shared) SHARED=$1 ;;
        --gateway) GATEWAY=$1 ;;
        --root) ROOT=$1 ;;
        --package) PACKAGE=$1 ;;
      esac
      shift
      ;;
    --no-node) WITH_NODE=0 ;;
    --force-config) FORCE_CONFIG=1 ;;
    --start) START=1 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done
[ -n "$ROLE" ] || die "name a role: router, host, peer or server (try --help)"
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=
fi
[ -n "$ROOT" ] || [ "$(id -u)" = 0 ] || die "must run as root (or with --root DIR)"
if [ -n "$PACKAGE" ]; then
  [ -f "$PACKAGE" ] || die "--package: no such file: $PACKAGE"
  PACKAGE=$(realpath "$PACKAGE")
fi

for pair in "router:$ROUTER_ADDR" "shared:$SHARED" "gateway:$GATEWAY" ${LAN_ADDR:+"lan-address:$LAN_ADDR"}; do
  is_ipv4 "${pair#*:}" || die "--${pair%%:*}: not an IPv4 address: ${pair#*:}"
done
for pair in "lan-if:$LAN_IF" "wan-if:$WAN_IF"; do
  [ -z "${pair#*:}" ] || [[ ${pair#*:} =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "--${pair%%:*}: bad interface name '${pair#*:}'"
done

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

# Scratch space of this run, removed whatever happens.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/distnat-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- 1. Node.js and the run-time packages --------------------------------------

node_recent_enough() {
  command -v node >/dev/null 2>&1 &&
    node -e "const [a, b] = process.versions.node.split('.').map(Number);
      process.exit(a > $NODE_MAJOR || (a === $NODE_MAJOR && b >= $NODE_MINOR) ? 0 : 1)"
}

APT_UPDATED=0
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing Debian packages: ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then
    apt-get update -q
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_node() {
  if node_recent_enough; then
    say "node $(node --version) is recent enough"
  else
    # NodeSource's documented set-up: their signing key and a "nodistro" suite.
    say "installing Node.js $NODE_MAJOR from deb.nodesource.com"
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
  apt_install "${RUNTIME_PACKAGES[@]}"
}

# --- 2. the package ------------------------------------------------------------

# Sets PACKAGE to a tarball made from SOURCE: a checkout is built (its
# development dependencies, esbuild among them, only in the scratch
# directory); an installed package (no src/) is packed as it is.
make_package() {
  if [ ! -d "$SOURCE/src" ]; then
    if [ "$(readlink -f "$SOURCE")" = "$(readlink -f "$OPT")" ]; then
      say "no --package: keeping the package installed in $OPT"
      return 0
    fi
    say "packing the installed package in $SOURCE"
    (cd "$SOURCE" && npm pack --ignore-scripts --silent --pack-destination "$WORK" >/dev/null)
  else
    say "building the package from the checkout $SOURCE"
    mkdir "$WORK/build"
    # What Vagrant's rsync leaves out too, and the checkout's own build
    # output: the package is built afresh from the sources.
    tar -C "$SOURCE" --exclude=./.git --exclude=./.vagrant --exclude=./node_modules --exclude=./dist \
      --exclude=./native-setup/addon/build --exclude=./run --exclude='./distnat-*.tgz' -cf - . |
      tar -C "$WORK/build" -xf -
    (
      cd "$WORK/build"
      npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error
      npm pack --silent --pack-destination "$WORK" >/dev/null
    ) || die "building the package failed (npm ci, npm pack in $WORK/build)"
  fi
  PACKAGE=$(echo "$WORK"/distnat-*.tgz)
  [ -f "$PACKAGE" ] || die "npm pack made no distnat-*.tgz"
}

install_package() {
  [ -n "$PACKAGE" ] || return 0
  if [ -n "$ROOT" ]; then
    rm -rf "$OPT"
    mkdir -p "$OPT"
    tar -xzf "$PACKAGE" -C "$OPT" --strip-components=1 --no-same-owner
    say "unpacked $(basename "$PACKAGE") in $OPT (files only)"
  else
    # Beside the package being installed, so that it installs itself.
    tar -xzf "$PACKAGE" -C "$WORK" package/native-setup/install-package.sh
    "$WORK/package/native-setup/install-package.sh" "$PACKAGE" "$OPT"
  fi
}

# --- 4. the service user ---------------------------------------------------

install_user() {
  if getent passwd "$USER_NAME" >/dev/null; then return 0; fi
  useradd --system --user-group --home-dir /var/lib/distnat --no-create-home \
    --shell /usr/sbin/nologin --comment "distnat daemons" "$USER_NAME"
  say "created system user $USER_NAME"
}

# --- 5. configuration ------------------------------------------------------

# set_key FILE KEY VALUE: replaces the value of a top-level "KEY: ..." (YAML)
# or "KEY=..." (environment file) line.
set_key() {
  local file=$1 key=$2 value=$3
  grep -qE "^$key(: |=)" "$file" || die "internal: no $key in $file"
  sed -i -E "s#^($key)(: |=).*#\1\2$value#" "$file"
}

install_config() {
  local src=$ASSETS/config yaml=$ETC/$ROLE.yaml env=$ETC/$ROLE.env tmp=$WORK/config
  mkdir -p "$ETC" "$tmp"
  chmod 0755 "$ETC"
  if [ "$ROLE" = router ] || [ "$ROLE" = host ]; then
    cp "$src/$ROLE.yaml" "$tmp/$ROLE.yaml"
    set_key "$tmp/$ROLE.yaml" sharedAddress "$SHARED"
    set_key "$tmp/$ROLE.yaml" lanAddress "$LAN_ADDR"
    [ "$ROLE" != host ] || set_key "$tmp/$ROLE.yaml" router "$ROUTER_ADDR"
  fi
  cp "$src/$ROLE.env" "$tmp/$ROLE.env"
  set_key "$tmp/$ROLE.env" DN_SHARED_ADDR "$SHARED"
  [ "$ROLE" != host ] || [ -z "$LAN_IF" ] || set_key "$tmp/$ROLE.env" DN_LAN_IF "$LAN_IF"
  if [ "$ROLE" = server ] || [ "$ROLE" = peer ]; then set_key "$tmp/$ROLE.env" DN_GATEWAY "$GATEWAY"; fi
  [ "$ROLE" != peer ] || set_key "$tmp/$ROLE.env" DN_WAN_IF "$WAN_IF"

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

# A router that finds no lease state holds off new grants for minutes, in
# case hosts still use blocks it has forgotten (docs/pap.md 6.3). On a new
# installation there are none: the file 'fresh' says so to its first start,
# which removes it. Never written beside existing state.
mark_first_start() {
  [ "$ROLE" = router ] || return 0
  local state=$ROOT/var/lib/distnat/router
  if [ -d "$state" ] && [ -n "$(ls -A "$state" 2>/dev/null)" ]; then return 0; fi
  mkdir -p "$state"
  chmod 0750 "$state"
  : >"$state/fresh"
  [ -n "$ROOT" ] || chown -R "$USER_NAME:$USER_NAME" "$state"
  say "first installation: $state/fresh lets the router grant leases at its first start"
}

# --- 6. the unit -----------------------------------------------------------

install_unit() {
  local unit=distnat-$ROLE.service
  mkdir -p "$UNITS"
  install -m 0644 "$ASSETS/systemd/$unit" "$UNITS/$unit"
  say "installed $UNITS/$unit"
  [ -z "$ROOT" ] || return 0
  systemctl daemon-reload
  systemctl enable "$unit"
  if [ "$ROLE" = peer ] && ! grep -qE '^DN_PEER_KEYING=.+' "$ETC/peer.env"; then
    say "enabled $unit; set DN_PEER_KEYING in $ETC/peer.env (how the SAs are keyed), then: systemctl start $unit"
  elif [ "$START" = 1 ]; then
    systemctl restart "$unit"
    say "started $unit (journalctl -u $unit)"
  else
    say "enabled $unit; start it with: systemctl start $unit"
  fi
}

# --- main ------------------------------------------------------------------

if [ -z "$ROOT" ] && [ "$WITH_NODE" = 1 ]; then install_node; fi
[ -n "$PACKAGE" ] || [ -n "$ROOT" ] || make_package
install_package
# The unit and the default configuration of the package just installed (they
# belong to its version), else of this checkout.
ASSETS=$SOURCE/native-setup
[ -z "$PACKAGE" ] || [ ! -d "$OPT/native-setup/systemd" ] || ASSETS=$OPT/native-setup
mkdir -p "$BIN"
# Absolute inside the installed system: bin/distnat finds its package through it.
ln -sfn /opt/distnat/bin/distnat "$BIN/distnat"
say "$BIN/distnat -> /opt/distnat/bin/distnat"
# The man page and completions the build made (dist/share), where man, bash
# and zsh look for local software; links, so that an update brings them along.
for f in man/man1/distnat.1 bash-completion/completions/distnat zsh/vendor-completions/_distnat; do
  [ -e "$OPT/dist/share/$f" ] || continue
  to=$ROOT/usr/local/share/${f/vendor-completions/site-functions}
  mkdir -p "$(dirname "$to")"
  ln -sfn "/opt/distnat/dist/share/$f" "$to"
done
[ -n "$ROOT" ] || install_user
install_config
mark_first_start
install_unit
if [ -z "$ROOT" ] && ! distnat --help >/dev/null 2>&1; then
  die "/usr/local/bin/distnat does not run: see 'distnat --help'"
fi
say "done: role $ROLE${LAN_ADDR:+, LAN address $LAN_ADDR}${LAN_IF:+ on $LAN_IF}, shared address $SHARED"
