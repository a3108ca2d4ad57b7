#!/usr/bin/env bash
# Usage: native-setup/install-package.sh PACKAGE.tgz DIR
#
# Installs a distnat package (the tarball `npm pack` makes) in DIR: the
# package's files, its run-time dependencies at exactly the versions of the
# lock file it carries (npm-shrinkwrap.json: the versions the tests ran
# with), and the native addon built for this machine's Node.js. No
# development dependency, no TypeScript, no checkout.
#
# DIR is made aside and renamed into place at the end: a failed install
# leaves the previous one as it was. Needs node and npm, and g++, make and
# python3 for the addon. The registry is asked only for what npm's cache
# lacks (--prefer-offline), so a cache filled earlier lets this run offline.
set -euo pipefail
ME=install-package.sh

die() {
  echo "$ME: $*" >&2
  exit 1
}

(($# == 2)) || die "usage: $ME PACKAGE.tgz DIR"
PACKAGE=$1
DEST=$2
[ -f "$PACKAGE" ] || die "no package file $PACKAGE"
command -v npm >/dev/null || die "npm is not installed"
DEST=$(realpath -m "$DEST")
PARENT=$(dirname "$DEST")
mkdir -p "$PARENT"

umask 022
NEW=$(mktemp -d "$PARENT/.$(basename "$DEST").new.XXXXXX")
OLD=
cleanup() {
  rm -rf "$NEW"
  [ -z "$OLD" ] || rm -rf "$OLD"
}
trap cleanup EXIT

# npm pack puts every file below package/.
tar -xzf "$PACKAGE" -C "$NEW" --strip-components=1 --no-same-owner
[ -f "$NEW/package.json" ] && [ -f "$NEW/bin/distnat" ] || die "$PACKAGE is not a distnat package"
[ -f "$NEW/npm-shrinkwrap.json" ] || die "$PACKAGE carries no npm-shrinkwrap.json: make it with \`npm pack\` in a checkout"

# --ignore-scripts: the package's own scripts (prepare builds from src/,
# which a package does not hold) must not run; no run-time dependency has
# an install script. The addon is built next, by the package's install
# script, which `npm run` gives npm's own node-gyp.
(cd "$NEW" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error) ||
  die "npm ci --omit=dev failed in $NEW"
# The compiler's output only when it fails.
if ! out=$(cd "$NEW" && npm run --silent install 2>&1); then
  printf '%s\n' "$out" | tail -n 40 >&2
  die "building the native addon failed (node-gyp: needs g++, make, python3 and Node.js's headers)"
fi
addon=$NEW/native-setup/addon/build/Release/distnat_native.node
node -e 'require(process.argv[1])' "$addon" || die "the native addon was built but does not load: $addon"
chmod 0755 "$NEW"

if [ -e "$DEST" ] || [ -L "$DEST" ]; then
  OLD=$(mktemp -d "$PARENT/.$(basename "$DEST").old.XXXXXX")
  mv -T "$DEST" "$OLD/old"
fi
mv -T "$NEW" "$DEST"
echo "$ME: installed $(node -p 'require(process.argv[1]).version' "$DEST/package.json") in $DEST"
