#!/bin/sh
# Builds distnat's BPF programs (every *.bpf.c here) into OUT-DIR with the
# machine's clang, against the UAPI headers of linux-libc-dev and libbpf-dev:
# no kernel structure is read, so the objects load on any kernel that has the
# helpers they call. node-gyp runs this as part of the native addon's build.
#
# Without clang the objects are not made and this says so: distnat then runs
# on its TUN data path (datapath: tun) and explains, if asked for ebpf, what
# is missing. scripts/setup installs clang, llvm and libbpf-dev.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT-DIR}
mkdir -p "$out"
CLANG=${CLANG:-clang}
if ! command -v "$CLANG" >/dev/null 2>&1; then
  echo "distnat: $CLANG not found: the eBPF data path is not built (apt-get install clang llvm libbpf-dev)" >&2
  exit 0
fi
if [ ! -f /usr/include/bpf/bpf_helpers.h ]; then
  echo "distnat: libbpf-dev's headers are missing: the eBPF data path is not built (apt-get install libbpf-dev)" >&2
  exit 0
fi
# asm/types.h lives under the multiarch include directory, which clang
# does not search when it targets bpf.
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
for src in "$here"/*.bpf.c; do
  obj=$out/$(basename "$src" .c).o
  "$CLANG" -O2 -g -Wall -Wextra -Werror -target bpf -I"/usr/include/$multiarch" -I"$here" \
    -c "$src" -o "$obj.tmp"
  mv "$obj.tmp" "$obj"
done
