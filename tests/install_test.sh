#!/usr/bin/env bash
# Installs the built library into a scratch DESTDIR and builds the README's program against it
# exactly as a user would (g++ -std=c++20 prog.cpp $(pkg-config --cflags --libs tapegrad)), then
# against the core alone (pkg-config tapegrad-core).
set -euo pipefail
build=$1 program=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

meson install -C "$build" --destdir "$tmp/root" --no-rebuild --quiet >/dev/null
pc=$(find "$tmp/root" -name tapegrad.pc)
[ -n "$pc" ] || { echo "FAIL: meson install wrote no tapegrad.pc"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
# The .pc names the final prefix; point it into the scratch root.
prefix=$(pkg-config --variable=prefix tapegrad)
flags=$(pkg-config --define-variable=prefix="$tmp/root$prefix" --cflags --libs tapegrad)
g++ -std=c++20 "$program" $flags -o "$tmp/prog"
libdir=$(pkg-config --define-variable=prefix="$tmp/root$prefix" --variable=libdir tapegrad)
out=$(LD_LIBRARY_PATH=$libdir "$tmp/prog")
expected='f=-12 df/dx=-4 df/dy=-4 df/dz=3'
if [ "$out" != "$expected" ]; then
  echo "FAIL: the installed library printed '$out', expected '$expected'"
  exit 1
fi
# The program must not have picked up the source tree's headers.
if g++ -std=c++20 -M "$program" $flags | grep -q "$(cd "$(dirname "$0")/.." && pwd)/autograd"; then
  echo "FAIL: the program compiled against the source tree, not the installed headers"
  exit 1
fi
# The same program on the core alone (tapegrad-core.pc): fmt is all it needs, no Graphviz.
sed 's|<tapegrad/autograd.hpp>|<tapegrad/core.hpp>|' "$program" >"$tmp/core_prog.cpp"
core_flags=$(pkg-config --define-variable=prefix="$tmp/root$prefix" --cflags --libs tapegrad-core)
g++ -std=c++20 "$tmp/core_prog.cpp" $core_flags -o "$tmp/core_prog"
if ldd "$tmp/core_prog" | grep -q -e cgraph -e gvc; then
  echo "FAIL: a program on tapegrad-core links Graphviz"
  exit 1
fi
core_out=$(LD_LIBRARY_PATH=$libdir "$tmp/core_prog")
if [ "$core_out" != "$expected" ]; then
  echo "FAIL: the installed core printed '$core_out', expected '$expected'"
  exit 1
fi
echo "installed library: README program printed '$out', on tapegrad-core too"
echo "1 passed, 0 failed"
