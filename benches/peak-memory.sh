#!/usr/bin/env bash
# Decrypts a >= 1 GiB crypt15 file under /usr/bin/time -v and fails if the peak resident set
# exceeds the limit (default 64 MiB). Usage: benches/peak-memory.sh [COFFER_BINARY] [LIMIT_MIB]
set -euo pipefail
coffer=${1:-target/release/coffer}
limit_mib=${2:-64}
work=$(mktemp -d "${TMPDIR:-/tmp}/coffer-peak.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1.5 GiB of plaintext: three parts random (incompressible) to one part chat-like text, so the
# crypt15 file itself exceeds 1 GiB.
python3 - "$work/plain" <<'PY'
import os, sys
chat = b"".join(b"msg %d: see you at %d o'clock, ok?\n" % (i, i % 24) for i in range(30000))[:1 << 20]
with open(sys.argv[1], "wb") as f:
    for i in range(1500):
        f.write(chat if i % 4 == 0 else os.urandom(1 << 20))
PY
"$coffer" key new --out "$work/key" > /dev/null
"$coffer" encrypt --key "$work/key" "$work/plain" -o "$work/big.crypt15" > /dev/null
size=$(stat -c %s "$work/big.crypt15")
if (( size < 1 << 30 )); then
  echo "peak-memory: the test file is only $size bytes, expected >= 1 GiB" >&2
  exit 1
fi
/usr/bin/time -v "$coffer" decrypt --key "$work/key" "$work/big.crypt15" -o "$work/out" 2> "$work/time.txt" > /dev/null
cmp "$work/plain" "$work/out"
peak_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
echo "peak-memory: decrypted $size bytes in $wall, peak RSS $((peak_kib / 1024)) MiB (limit $limit_mib MiB)"
if (( peak_kib > limit_mib * 1024 )); then
  echo "peak-memory: FAILED, peak RSS above the limit" >&2
  exit 1
fi
