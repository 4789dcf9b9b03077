#!/usr/bin/env bash
# The fresh-machine rule (README, first command): the main job builds and runs with nothing
# but the Rust toolchain. Run by scripts/test.sh before it installs anything; by hand:
#   scripts/fresh-machine.sh
#
# What it proves, and how:
# - no build script needs protoc: `cargo tree` holds no protobuf code generator, and the
#   build runs with PROTOC pointing at a program that fails and a failing `protoc` first on
#   PATH (so a build script that found one anywhere would stop the build);
# - the main job runs to the end with exit code 0; where SoftHSM2 is installed already (a
#   machine that ran the test command before), it is hidden from the run when this runs as
#   root (a private mount namespace with an empty directory over /usr/lib/softhsm), so the
#   HSM suite's one-line "not installed" answer is what a fresh machine sees.
set -euo pipefail
cd "$(dirname "$0")/.."

tree=$(cargo tree --workspace --locked -e normal,build --prefix none)
generators=$(grep -E '^(prost-build|tonic-build|tonic-prost-build|protobuf-codegen|protoc-bin-vendored) ' <<<"$tree" | sort -u || true)
if [[ -n "$generators" ]]; then
  echo "a protobuf code generator is in the build graph (it needs protoc):"
  echo "$generators"
  exit 1
fi
echo "no protobuf code generator in the build graph"

# The layering the crate split promises, read off the dependency graph: the format crate
# pulls in no async runtime, network, database or PKCS#11 library, and the vault crate
# without its features no etcd client and no PKCS#11 library.
forbidden() { # crate, cargo-tree arguments, then the crates it must not pull in
  local crate=$1 args=$2; shift 2
  local tree found
  # shellcheck disable=SC2086
  tree=$(cargo tree -p "$crate" $args --locked -e normal --prefix none)
  found=$(grep -oE "^($(IFS='|'; echo "$*")) " <<<"$tree" | sort -u | tr '\n' ' ' || true)
  if [[ -n "$found" ]]; then
    echo "$crate${args:+ $args} depends on $found"
    exit 1
  fi
  echo "$crate${args:+ $args}: none of $*"
}
forbidden coffer-format "" tokio axum hyper tonic rusqlite cryptoki clap
forbidden coffer-vault --no-default-features tonic prost cryptoki

shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
printf '#!/bin/sh\necho "protoc is unreachable on purpose (fresh-machine check)" >&2\nexit 1\n' >"$shim/protoc"
chmod +x "$shim/protoc"

run=(env PROTOC="$shim/protoc" PATH="$shim:$PATH"
  cargo run --release --locked -p coffer-conformance -- run)
if [[ $(id -u) == 0 && -d /usr/lib/softhsm ]] && unshare --mount true 2>/dev/null; then
  echo "SoftHSM2 is installed here: hiding it from this run, as on a fresh machine"
  unshare --mount bash -c 'mount -t tmpfs none /usr/lib/softhsm && exec "$@"' - "${run[@]}"
else
  "${run[@]}"
fi
