#!/usr/bin/env bash
# Coffer's main job on the bundled real WhatsApp backup: inspect it, open it with its
# 64-digit key, and re-encrypt it byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p coffer
coffer=target/release/coffer
samples=vectors/external/wa-crypt-tools
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== coffer info $samples/msgstore.db.crypt15"
$coffer info "$samples/msgstore.db.crypt15"
echo
echo "== the key"
$coffer key show "$samples/encrypted_backup.key"
echo
echo "== coffer decrypt (crypt15, crypt14, crypt12)"
$coffer decrypt --key "$samples/encrypted_backup.key" "$samples/msgstore.db.crypt15" -o "$work/msgstore.db"
$coffer decrypt --key "$samples/key" "$samples/msgstore.db.crypt14" -o "$work/msgstore14.db"
$coffer decrypt --key "$samples/key" "$samples/msgstore.db.crypt12" -o "$work/msgstore12.db"
for f in msgstore.db msgstore14.db msgstore12.db; do
  cmp "$work/$f" "$samples/msgstore.db" && echo "$f matches the original database"
done
echo
echo "== coffer encrypt --like --keep-iv (byte-exact reproduction)"
$coffer encrypt --key "$samples/encrypted_backup.key" --like "$samples/msgstore.db.crypt15" --keep-iv \
  "$work/msgstore.db" -o "$work/again.crypt15"
cmp "$work/again.crypt15" "$samples/msgstore.db.crypt15" && echo "identical to the WhatsApp-made file"
echo
echo "== the Coffer format: the same database as a Coffer file (zstd, and uncompressed)"
key="$samples/encrypted_backup.key"
$coffer encrypt --format coffer --key "$key" "$work/msgstore.db" -o "$work/msgstore.coffer"
$coffer encrypt --format coffer --compress none --key "$key" "$work/msgstore.db" -o "$work/plain.coffer"
$coffer info "$work/msgstore.coffer"
$coffer verify --key "$key" "$work/msgstore.coffer"
$coffer decrypt --key "$key" "$work/msgstore.coffer" -o "$work/back.db"
cmp "$work/back.db" "$samples/msgstore.db" && echo "back.db matches the original database"
echo
echo "== random access: the SQLite header page only (decrypts one 16 KiB chunk)"
$coffer decrypt --key "$key" "$work/plain.coffer" --range 0:100 -o "$work/page"
head -c 16 "$work/page"; echo
echo
echo "== what a damaged copy reports (exit code = error class)"
head -c -5000 "$work/plain.coffer" > "$work/cut.coffer"
$coffer verify --key "$key" "$work/cut.coffer" || echo "exit code $?"
cp "$work/plain.coffer" "$work/longer.coffer"; printf 'appended' >> "$work/longer.coffer"
$coffer verify --key "$key" "$work/longer.coffer" || echo "exit code $?"
COFFER_KEY="$(printf '0%.0s' {1..64})" $coffer verify "$work/plain.coffer" || echo "exit code $?"
