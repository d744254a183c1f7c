#!/usr/bin/env bash
# Builds the frame-decoder fuzz target with clang-14 (libFuzzer, ASan, UBSan)
# into build-fuzz/ and runs it for the given number of seconds (default 600).
# Exits non-zero on any crash, leak, sanitizer report or oversized allocation.
set -euo pipefail
seconds="${1:-600}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${ACTORBUS_FUZZ_BUILD:-$root/build-fuzz}"
mkdir -p "$out/corpus"
cxx="$(command -v clang++-14 || true)"
if [ -z "$cxx" ]; then
  echo "ipc fuzz: clang++-14 not found (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi
exe="$out/ipc_frame_fuzz"
srcs=("$root/ipc/fuzz/frame_fuzz.cpp" "$root/ipc/src/frame.cpp" "$root/ipc/src/error.cpp"
      "$root/runtime/src/error.cpp")
# Rebuild only when a source is newer than the binary.
rebuild=0
[ -x "$exe" ] || rebuild=1
for s in "${srcs[@]}" "$root/ipc/src/checked_deserializer.hpp" "$root/ipc/include/actorbus/ipc/frame.hpp"; do
  [ "$s" -nt "$exe" ] && rebuild=1
done
if [ "$rebuild" = 1 ]; then
  echo "ipc fuzz: building $exe" >&2
  "$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I"$root/ipc/include" -I"$root/ipc/src" \
    -I"$root/runtime/include" \
    "${srcs[@]}" -lcaf_core -o "$exe.tmp"
  mv "$exe.tmp" "$exe"
fi
# Seed corpus: small valid frames would be nice; libFuzzer finds them fast.
cd "$out"
exec "$exe" -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048 \
  -malloc_limit_mb=64 -timeout=10 -print_final_stats=1 "$out/corpus"
