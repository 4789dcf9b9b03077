#!/usr/bin/env python3
"""Prints the latest criterion results as a Markdown table of throughput and of ratios to the
group's baseline measured in the same run (raw AES-256-GCM over the full plaintext).

Usage: cargo bench -p coffer-bench && python3 benches/report.py [target/criterion]
"""
import json
import pathlib
import sys

BASELINES = ["ceiling_aes256gcm_aws_lc_rs_full_plaintext", "ceiling_aes256gcm_openssl_full_plaintext", "ceiling_memcpy",
             # crypt15 at 1 GiB: the inflate bound; zstd on the chat database: one-thread zstd.
             "ceiling_inflate_zlib_rs_streaming", "ceiling_zstd3_compress_one_thread"]
# Groups timed per operation (no byte throughput), with the baseline of their ratio column.
TIMED_BASELINES = {"hsm_record": "soft_unseal", "vault_server": "recovery_server_side_ke1_plus_ke3",
                   "vault_client": "ceiling_argon2id_spec_ksf_alone"}
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
groups = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report")
if not groups:
    sys.exit(f"no criterion results under {root}: run cargo bench -p coffer-bench first")
def timed_group(group, baseline):
    rows = {}
    for bench in sorted(group.iterdir()):
        estimates = bench / "new" / "estimates.json"
        if estimates.exists():
            rows[bench.name] = json.loads(estimates.read_text())["median"]["point_estimate"] / 1e3
    if baseline not in rows:
        return
    print(f"\n### {group.name} (median per operation; ratio to {baseline} in the same run)\n")
    print("| bench | median | per second | ratio |")
    print("|---|---:|---:|---:|")
    for name, micros in sorted(rows.items()):
        print(f"| {name} | {micros:,.2f} µs | {1e6 / micros:,.0f}/s | {micros / rows[baseline]:.2f} |")


for group in groups:
    if group.name in TIMED_BASELINES:
        timed_group(group, TIMED_BASELINES[group.name])
        continue
    rows = {}
    for bench in sorted(group.iterdir()):
        estimates = bench / "new" / "estimates.json"
        benchmark = bench / "new" / "benchmark.json"
        if not estimates.exists():
            continue
        seconds = json.loads(estimates.read_text())["median"]["point_estimate"] / 1e9
        size = json.loads(benchmark.read_text())["throughput"]["Bytes"]
        rows[bench.name] = size / seconds
    baseline = next((b for b in BASELINES if b in rows), None)
    if baseline is None:
        continue
    base = rows[baseline]
    print(f"\n### {group.name} (plaintext bytes; ratio to {baseline} in the same run)\n")
    print("| bench | MiB/s | ratio |")
    print("|---|---:|---:|")
    for name, rate in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {rate / 2**20:,.0f} | {rate / base:.2f} |")

share = root / "hsm-share.md"
if share.exists():
    print("\n### The HSM's share of one recovery's server time (written by the vault bench)\n")
    print(share.read_text())

ratios = root / "compression-ratios.md"
if ratios.exists():
    print("\n### Compressed sizes (written by the compression bench)\n")
    print(ratios.read_text())
