#!/usr/bin/env bash
# Streams >= 1 GiB through coffer under /usr/bin/time -v and fails if any step's peak resident
# set exceeds the limit (default 64 MiB): crypt15 decrypt, and a Coffer-format round trip
# (encrypt, parallel and streaming decrypt, zstd encrypt, parallel and streaming decrypt).
# Usage: benches/peak-memory.sh [COFFER_BINARY] [LIMIT_MIB]
set -euo pipefail
coffer=${1:-target/release/coffer}
limit_mib=${2:-64}
work=$(mktemp -d "${TMPDIR:-/tmp}/coffer-peak.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1.5 GiB of plaintext: three parts random (incompressible) to one part chat-like text, so the
# encrypted files exceed 1 GiB.
python3 - "$work/plain" <<'PY'
import os, sys
chat = b"".join(b"msg %d: see you at %d o'clock, ok?\n" % (i, i % 24) for i in range(30000))[:1 << 20]
with open(sys.argv[1], "wb") as f:
    for i in range(1500):
        f.write(chat if i % 4 == 0 else os.urandom(1 << 20))
PY
"$coffer" key new --out "$work/key" > /dev/null

failed=0
# measure NAME COMMAND...: runs it under time -v, prints wall time and peak RSS.
measure() {
  local name=$1
  shift
  /usr/bin/time -v "$@" 2> "$work/time.txt" > /dev/null
  local peak_kib wall
  peak_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
  echo "peak-memory: $name in $wall, peak RSS $((peak_kib / 1024)) MiB (limit $limit_mib MiB)"
  if (( peak_kib > limit_mib * 1024 )); then
    echo "peak-memory: FAILED, $name peak RSS above the limit" >&2
    failed=1
  fi
}

need_gib() {
  local size
  size=$(stat -c %s "$1")
  if (( size < 1 << 30 )); then
    echo "peak-memory: $1 is only $size bytes, expected >= 1 GiB" >&2
    exit 1
  fi
}

"$coffer" encrypt --key "$work/key" "$work/plain" -o "$work/big.crypt15" > /dev/null
need_gib "$work/big.crypt15"
measure "crypt15 decrypt of $(stat -c %s "$work/big.crypt15") bytes" \
  "$coffer" decrypt --key "$work/key" "$work/big.crypt15" -o "$work/out"
cmp "$work/plain" "$work/out"
rm -f "$work/out" "$work/big.crypt15"

measure "coffer encrypt (uncompressed) of 1.5 GiB" \
  "$coffer" encrypt --format coffer --compress none --key "$work/key" "$work/plain" -o "$work/big.coffer"
need_gib "$work/big.coffer"
measure "coffer decrypt (parallel) of $(stat -c %s "$work/big.coffer") bytes" \
  "$coffer" decrypt --key "$work/key" "$work/big.coffer" -o "$work/out"
cmp "$work/plain" "$work/out"
rm -f "$work/out"
measure "coffer decrypt (streaming, --threads 1)" \
  "$coffer" decrypt --threads 1 --key "$work/key" "$work/big.coffer" -o "$work/out"
cmp "$work/plain" "$work/out"
rm -f "$work/out" "$work/big.coffer"

measure "coffer encrypt (zstd) of 1.5 GiB" \
  "$coffer" encrypt --format coffer --compress zstd --key "$work/key" "$work/plain" -o "$work/big.coffer"
need_gib "$work/big.coffer"
measure "coffer decrypt (zstd, seekable frames on all cores) of $(stat -c %s "$work/big.coffer") bytes" \
  "$coffer" decrypt --key "$work/key" "$work/big.coffer" -o "$work/out"
cmp "$work/plain" "$work/out"
rm -f "$work/out"
measure "coffer decrypt (zstd, streaming, --threads 1)" \
  "$coffer" decrypt --threads 1 --key "$work/key" "$work/big.coffer" -o "$work/out"
cmp "$work/plain" "$work/out"
exit $failed
