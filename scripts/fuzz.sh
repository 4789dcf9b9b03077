#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of untrusted bytes (reference/fuzz), on stable Rust:
# libFuzzer (built from source by the libfuzzer-sys crate) with SanitizerCoverage turned on
# by rustc's stable `-C passes=sancov-module` flags, as cargo-fuzz does with `--sanitizer
# none`. No nightly toolchain and no cargo-fuzz binary are needed; AddressSanitizer is not
# used (it needs nightly), so the targets find panics, failed assertions, overflows (built
# with overflow checks and debug assertions), hangs and runaway memory.
#
#   scripts/fuzz.sh                      every target for 60 s, two at a time (the test command)
#   scripts/fuzz.sh --seconds 3600 --jobs 2 --merge       a campaign: an hour per target, and
#                                        the coverage it gained kept in reference/fuzz/corpus/
#   scripts/fuzz.sh --seconds 600 vault_client legacy     some targets only
#   scripts/fuzz.sh --list               the targets
#
# Each target starts from its kept corpus (reference/fuzz/corpus/TARGET) and its regression
# inputs (reference/fuzz/regressions/TARGET). A crash, hang or out-of-memory fails the run and
# leaves the input in target/fuzz/artifacts/TARGET/; minimize it with
#   target/fuzz/x86_64-unknown-linux-gnu/release/TARGET -minimize_crash=1 -runs=100000 FILE
# and add it to reference/fuzz/regressions/TARGET/, where the test command replays it.
# The last lines are a table: executions, executions per second, coverage (edges and
# features) and corpus size per target. Exit code 0: no target failed; 1: one did.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=60
jobs=2
merge=0
list=0
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --merge) merge=1; shift ;;
    --list) list=1; shift ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

all=$(sed -n 's/^name = "\(.*\)"$/\1/p' reference/fuzz/Cargo.toml | grep -v '^coffer-fuzz$')
if ((list)); then echo "$all"; exit 0; fi
if ((${#targets[@]} == 0)); then mapfile -t targets <<<"$all"; fi
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$all" || { echo "fuzz.sh: no target $t (--list)" >&2; exit 2; }
done

triple=$(rustc -vV | sed -n 's/^host: //p')
out=$root/target/fuzz
# The flags cargo-fuzz passes, less the sanitizer: edge counters, a table of their PCs, and
# comparison tracing, so that the fuzzer learns magic numbers and lengths. `--target` keeps
# them off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
echo "building ${#targets[@]} fuzz targets (release, SanitizerCoverage, $triple)"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --manifest-path reference/fuzz/Cargo.toml --locked --release --quiet \
  --target "$triple" --target-dir "$out" "${bins[@]}"
unset RUSTFLAGS

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run_one() {
  local t=$1 bin=$out/$triple/release/$1 status=0
  mkdir -p "$work/$t/corpus" "$work/$t/tmp" "$out/artifacts/$t" "reference/fuzz/corpus/$t"
  # The vault targets keep a database in TMPDIR; it goes with the run.
  TMPDIR=$work/$t/tmp "$bin" "$work/$t/corpus" "reference/fuzz/corpus/$t" \
    "reference/fuzz/regressions/$t" -max_total_time="$seconds" -timeout=20 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/artifacts/$t/" \
    >"$work/$t/log" 2>&1 || status=$?
  echo "$status" >"$work/$t/status"
  if ((merge)) && ((status == 0)); then
    # Keep the smallest set of inputs that covers what the kept corpus and this run covered.
    mkdir -p "$work/$t/merged"
    "$bin" -merge=1 "$work/$t/merged" "reference/fuzz/corpus/$t" "$work/$t/corpus" \
      >"$work/$t/merge.log" 2>&1
    rm -rf "reference/fuzz/corpus/$t"
    mv "$work/$t/merged" "reference/fuzz/corpus/$t"
  fi
}

echo "fuzzing: ${#targets[@]} targets, $seconds s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

failed=0
printf '%-13s %12s %9s %6s %7s %7s  %s\n' target executions "exec/s" cov features corpus result
for t in "${targets[@]}"; do
  log=$work/$t/log
  status=$(cat "$work/$t/status" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  result=ok
  if [[ $status != 0 ]]; then
    result="FAILED (exit $status)"
    failed=1
  fi
  printf '%-13s %12s %9s %6s %7s %7s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$result"
done
if ((failed)); then
  for t in "${targets[@]}"; do
    [[ $(cat "$work/$t/status" 2>/dev/null || echo 1) == 0 ]] && continue
    echo
    echo "--- $t: the end of libFuzzer's log (the input is in $out/artifacts/$t/)"
    grep -v '^#[0-9]' "$work/$t/log" | tail -40
  done
  exit 1
fi
