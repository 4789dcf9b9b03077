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
