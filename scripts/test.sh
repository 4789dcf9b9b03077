#!/usr/bin/env bash
# Runs every Coffer test on a fresh Debian machine, installing what the tests need first:
# Debian packages (OpenSSL and zlib headers, SoftHSM2, xmllint, Chromium), and the real
# wa-crypt-tools and whatsapp-chat-exporter from PyPI, each in its own venv.
#
# Opt-outs, by name only: COFFER_SKIP_INTEROP=1 (no wa-crypt-tools, no
# whatsapp-chat-exporter), COFFER_SKIP_CHROMIUM=1 (no headless-browser check of the HTML
# report), COFFER_SKIP_BIGFILE=1
# (no >= 1 GiB peak-memory check), COFFER_SKIP_SCHEMATHESIS=1 (no OpenAPI fuzzing of the
# vault), COFFER_SKIP_SOFTHSM=1 (no PKCS#11 tests on SoftHSM2), COFFER_SKIP_KRYOPTIC=1 (no
# kryoptic build and tests), COFFER_SKIP_PYTHON_VECTORS=1 (no Python re-check of the vectors, no Python model adapter and mutants),
# COFFER_SKIP_ETCD=1 (no etcd store tests), COFFER_SKIP_MSRV=1 (no build with the oldest
# supported Rust), COFFER_SKIP_PYTHON_PACKAGE=1 (no build and pytest of
# the Python package), COFFER_SKIP_PROMETHEUS=1 (no parse of the vault's /metrics by the
# Prometheus project's Python parser), COFFER_SKIP_FUZZ=1 (no coverage-guided fuzzing;
# COFFER_FUZZ_SECONDS=N sets each target's time, 60 by default), COFFER_SKIP_DISK_FAULTS=1 (no
# full-disk test of the vault: it mounts a tmpfs, which needs root), COFFER_SKIP_PARTITIONS=1 (no
# network partitions between vault sites: network namespaces and nftables, as root).
# Anything else missing is a failure, not a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# A batch run gains nothing from incremental compilation, whose caches are the largest part of
# a test build's target directory; the disk these runs share is not always large.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
disk() { df -h --output=avail "$root" | tail -1 | tr -d ' '; }
echo "disk free at the start: $(disk)"

step "the main job on a machine with only Rust (no protoc; before anything is installed)"
scripts/fresh-machine.sh

step "Debian packages"
packages=(pkg-config libssl-dev zlib1g-dev time softhsm2 libclang-dev opensc openssl libxml2-utils
  etcd-server etcd-client python3 python3-venv iproute2 nftables)
if [[ "${COFFER_SKIP_CHROMIUM:-}" != 1 ]]; then packages+=(chromium); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ "${COFFER_SKIP_INTEROP:-}" != 1 ]]; then
  step "wa-crypt-tools and whatsapp-chat-exporter (PyPI) in .venv/, by the adapters' setup step"
  venv=$(conformance/adapters/setup.sh wa-crypt-tools "$root")
  export COFFER_WA_CRYPT_TOOLS="$venv/bin"
  venv=$(conformance/adapters/setup.sh whatsapp-chat-exporter "$root")
  export COFFER_WHATSAPP_CHAT_EXPORTER="$venv/bin/python"
fi

if [[ "${COFFER_SKIP_PYTHON_VECTORS:-}" != 1 ]]; then
  step "the independent Python readers of the vectors and the model adapter (PyPI pyyaml, cryptography, PyKCS11, zstandard) in .venv/vectors"
  venv="$root/.venv/vectors"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import yaml, cryptography, PyKCS11, zstandard" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "pyyaml==6.0.2" "cryptography==44.0.3" \
      "PyKCS11==1.5.20" "zstandard==0.23.0"
  fi
  export COFFER_VECTORS_PYTHON="$venv/bin/python"
fi

if [[ "${COFFER_SKIP_PROMETHEUS:-}" != 1 ]]; then
  step "the Prometheus project's OpenMetrics parser (PyPI prometheus-client) in .venv/prometheus"
  venv="$root/.venv/prometheus"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import prometheus_client" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "prometheus-client==0.21.1"
  fi
  export COFFER_PROMETHEUS_PYTHON="$venv/bin/python"
fi

if [[ "${COFFER_SKIP_KRYOPTIC:-}" != 1 ]]; then
  step "kryoptic PKCS#11 module (crates.io) in target/kryoptic"
  COFFER_KRYOPTIC_MODULE=$(scripts/kryoptic.sh)
  export COFFER_KRYOPTIC_MODULE
  echo "$COFFER_KRYOPTIC_MODULE"
fi

step "licenses, duplicate versions, sources (cargo-deny; advisories need GitHub, unreachable here)"
deny_version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $deny_version"; then
  cargo install --locked --quiet --force cargo-deny --version "$deny_version"
fi
cargo deny check licenses bans sources

if [[ "${COFFER_SKIP_MSRV:-}" != 1 ]]; then
  msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
  step "MSRV: the workspace builds with Rust $msrv (rust-version in Cargo.toml)"
  if ! rustup toolchain list | grep -q "^$msrv"; then
    rustup toolchain install "$msrv" --profile minimal
  fi
  CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --workspace --all-targets --locked --quiet
  rm -rf target/msrv # a check build is not used again; its space is
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# The vault crate's features, each alone and none (the workspace builds only with all).
for features in "" etcd pkcs11; do
  cargo clippy -p coffer-vault --all-targets --locked --no-default-features --features "$features" -- -D warnings
done

step "the suite's own lint: no error assertion without its class, no test without an assertion"
python3 scripts/lint-tests.py

step "tests"
test_log=$(mktemp)
# Every opted-out test writes its name and reason here (coffer_testkit::opt_out): it is
# counted as skipped, not passed, and named in the summary.
export COFFER_SKIPPED_TESTS
COFFER_SKIPPED_TESTS=$(mktemp)
# The fault tests (disk, HSM, partitions, soak) write their verdicts here (coffer_testkit::report):
# cargo test shows nothing of a test that passed, and these lines are what the runs measured.
export COFFER_FAULT_REPORT
COFFER_FAULT_REPORT=$(mktemp)
trap 'rm -f "$test_log" "$COFFER_SKIPPED_TESTS" "$COFFER_FAULT_REPORT"' EXIT
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$test_log"
read -r passed failed < <(awk '/^test result:/ {p += $4; f += $6} END {print p + 0, f + 0}' "$test_log")
skipped=$(cut -f1 "$COFFER_SKIPPED_TESTS" | sort -u | grep -c . || true)
passed=$((passed - skipped))

fuzz_seconds=${COFFER_FUZZ_SECONDS:-60}
if [[ "${COFFER_SKIP_FUZZ:-}" != 1 ]]; then
  step "coverage-guided fuzzing: every target of reference/fuzz for $fuzz_seconds s, two at a time"
  scripts/fuzz.sh --seconds "$fuzz_seconds" --jobs 2
  passed=$((passed + $(scripts/fuzz.sh --list | wc -l)))
else
  for t in $(scripts/fuzz.sh --list); do
    printf 'fuzz:%s\tCOFFER_SKIP_FUZZ=1\n' "$t" >>"$COFFER_SKIPPED_TESTS"
  done
  skipped=$(cut -f1 "$COFFER_SKIPPED_TESTS" | sort -u | grep -c . || true)
fi

step "benches in quick mode (each bench runs once on small inputs, so none can rot)"
bench_log=$(mktemp)
if ! COFFER_BENCH_QUICK=1 cargo test --locked -p coffer-bench --benches >"$bench_log" 2>&1; then
  cat "$bench_log"
  echo "the benches failed in quick mode"
  exit 1
fi
echo "benches run once each: $(grep -c '^Success' "$bench_log")"
rm -f "$bench_log"

cargo build --release --locked -p coffer

if [[ "${COFFER_SKIP_PYTHON_PACKAGE:-}" != 1 ]]; then
  step "the Python package: pip install into a fresh venv, pytest (byte-exact and speed vs wa-crypt-tools)"
  py_log=$(mktemp)
  scripts/python-package.sh 2>&1 | tee "$py_log"
  read -r py_passed py_failed < <(awk '/ passed| failed/ {
      for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p = $(i-1); if ($i ~ /^failed/) f = $(i-1) } }
    END {print p + 0, f + 0}' "$py_log")
  passed=$((passed + py_passed))
  failed=$((failed + py_failed))
  rm -f "$py_log"
fi

step "vault load generator, quick (1 s per backend, 4 clients, whole recoveries)"
backends=soft
if [[ "${COFFER_SKIP_SOFTHSM:-}" != 1 ]]; then backends+=",softhsm2"; fi
if [[ "${COFFER_SKIP_KRYOPTIC:-}" != 1 ]]; then backends+=",kryoptic"; fi
cargo run -q --locked -p coffer-bench --bin vault-load -- --seconds 1 --clients 4 \
  --mode recoveries --backends "$backends" --coffer target/release/coffer
step "vault load generator, quick: HTTP and HTTPS (1 s each, 4 clients, whole recoveries)"
cargo run -q --locked -p coffer-bench --bin vault-load -- --seconds 1 --clients 4 \
  --mode recoveries --backends soft --transports http,https --coffer target/release/coffer
step "vault load generator, quick: 2-of-3 realms against one vault (1 s each, 4 clients)"
cargo run -q --locked -p coffer-bench --bin vault-load -- --seconds 1 --clients 4 \
  --mode realms --coffer target/release/coffer

if [[ "${COFFER_SKIP_SCHEMATHESIS:-}" != 1 ]]; then
  step "schemathesis (PyPI) against the vault's HTTP API and spec/openapi.yaml"
  scripts/schemathesis.sh target/release/coffer
fi

if [[ "${COFFER_SKIP_BIGFILE:-}" != 1 ]]; then
  step "peak memory streaming >= 1 GiB"
  benches/peak-memory.sh target/release/coffer
fi

step "all tests passed"
if [[ -s "$COFFER_FAULT_REPORT" ]]; then
  echo "fault runs (each verdict as its test printed it):"
  sed 's/^/  /' "$COFFER_FAULT_REPORT"
fi
echo "disk: target/ holds $(du -sh target | cut -f1), $(disk) free"
echo "tests: $passed passed, $failed failed, $skipped skipped"
if ((skipped)); then
  echo "skipped, in whole or in part (opted out by name):"
  sort -u "$COFFER_SKIPPED_TESTS" | sed 's/^/  /; s/\t/: /'
fi
