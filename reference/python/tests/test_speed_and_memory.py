"""Decrypt speed and peak memory against wa-crypt-tools, measured in the same run.

Each decryption runs in its own Python process (the same interpreter startup for both), under
GNU time, whose %M is the peak RSS of that process alone (os.wait4 from this process would
not do: Linux carries the parent's high-water mark over fork and exec). The best of three
wall times counts. The ratios are printed
and written to target/python-package-bench.json. The floors are deliberately far below what
is measured (see reference/python/README.md), so a noisy shared machine does not fail them;
a regression to wa-crypt-tools' level does.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import coffer
from conftest import REPO, chat_like

SIZE = 64 << 20
KEY_HEX = "c0ffee" * 10 + "c0ff"
GNU_TIME = "/usr/bin/time"

COFFER_CHILD = """
import sys, coffer
coffer.decrypt(sys.argv[1], sys.argv[2], key=sys.argv[3], overwrite=True)
"""


def measure(argv, cwd: pathlib.Path) -> tuple:
    report = cwd / "time.txt"
    start = time.perf_counter()
    done = subprocess.run(
        [GNU_TIME, "-f", "%M", "-o", str(report), *argv], cwd=cwd, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, f"{argv}: {done.stderr[-2000:]}"
    return elapsed, int(report.read_text().split()[-1]) * 1024


def test_decrypt_speed_and_peak_memory_against_wa_crypt_tools(wa_tools, tmp_path):
    assert os.access(GNU_TIME, os.X_OK), "GNU time is missing (Debian package `time`)"
    plain = chat_like(SIZE, seed=3)
    (tmp_path / "msgstore.db").write_bytes(plain)
    backup = tmp_path / "msgstore.db.crypt15"
    coffer.encrypt(tmp_path / "msgstore.db", backup, key=KEY_HEX)
    del plain
    runs = {
        "coffer": [sys.executable, "-c", COFFER_CHILD, str(backup), str(tmp_path / "ours.db"), KEY_HEX],
        "wa-crypt-tools": [str(wa_tools / "wadecrypt"), KEY_HEX, str(backup), str(tmp_path / "theirs.db")],
    }
    best = {name: (float("inf"), 0) for name in runs}
    for _ in range(3):
        for name, argv in runs.items():
            (tmp_path / "theirs.db").unlink(missing_ok=True)
            seconds, peak = measure(argv, tmp_path)
            best[name] = (min(best[name][0], seconds), max(best[name][1], peak))
    assert (tmp_path / "ours.db").read_bytes() == (tmp_path / "theirs.db").read_bytes()
    ours, theirs = best["coffer"], best["wa-crypt-tools"]
    report = {
        "input_bytes": backup.stat().st_size,
        "plaintext_bytes": SIZE,
        "coffer": {"seconds": round(ours[0], 3), "peak_rss_bytes": ours[1]},
        "wa_crypt_tools": {"seconds": round(theirs[0], 3), "peak_rss_bytes": theirs[1]},
        "speed_ratio": round(theirs[0] / ours[0], 2),
        "peak_memory_ratio": round(ours[1] / theirs[1], 4),
    }
    target = REPO / "target"
    target.mkdir(exist_ok=True)
    (target / "python-package-bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + json.dumps(report, indent=2))
    assert report["speed_ratio"] >= 1.5, report
    assert report["peak_memory_ratio"] <= 0.5, report
