#!/usr/bin/env bash
# Builds the kryoptic PKCS#11 module (crates.io, version pinned) into target/kryoptic/ and
# prints its path. Bookworm's OpenSSL is 3.0, so it is built without the features that need
# 3.2+ (EdDSA): `minimal` plus dynamic linking to the system OpenSSL. Needs libclang-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.5.4
dest=target/kryoptic
module="$dest/libkryoptic_pkcs11.so"
if [[ ! -f "$module" ]]; then
  mkdir -p "$dest/fetch/src"
  cat > "$dest/fetch/Cargo.toml" <<TOML
[package]
name = "kryoptic-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
kryoptic = "=$version"
[workspace]
TOML
  echo 'fn main() {}' > "$dest/fetch/src/main.rs"
  cargo fetch --quiet --manifest-path "$dest/fetch/Cargo.toml" >&2
  src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "kryoptic-$version" | head -1)
  [[ -n "$src" ]] || { echo "kryoptic-$version source not found after cargo fetch" >&2; exit 1; }
  rm -rf "$dest/src" && cp -r "$src" "$dest/src"
  chmod -R u+w "$dest/src"
  printf '\n[workspace]\n' >> "$dest/src/Cargo.toml"   # not a member of Coffer's workspace
  cargo build --quiet --release --locked --manifest-path "$dest/src/Cargo.toml" \
    --no-default-features --features "minimal kryoptic-lib/dynamic" --target-dir "$dest/build" >&2
  cp "$dest/build/release/libkryoptic_pkcs11.so" "$module"
  rm -rf "$dest/build" "$dest/src" "$dest/fetch" # only the module is used again
fi
realpath "$module"
