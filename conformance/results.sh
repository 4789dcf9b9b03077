#!/usr/bin/env bash
# Writes the "Conformance results" tables of README.md from the runner's own output
# (`coffer-conformance run --markdown`): the default run (the reference client, its own vault,
# SoftHSM2) and the third-party adapters (wa-crypt-tools, whatsapp-chat-exporter, installed
# from PyPI by conformance/adapters/setup.sh). Nothing in those tables is typed by hand: the
# conformance tests render the same runs and fail when README.md differs.
#
# Usage: conformance/results.sh        (from anywhere; needs SoftHSM2 and Python 3)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cargo build -q -p coffer-conformance
runner="$root/target/debug/coffer-conformance"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$runner" run --markdown "$tmp/reference.md" >/dev/null
wa=$(conformance/adapters/setup.sh wa-crypt-tools "$root")
"$runner" run --client "python3 $root/conformance/adapters/wa_crypt_tools.py $wa/bin/wadecrypt" \
  --markdown "$tmp/wa-crypt-tools.md" >/dev/null || [[ $? -eq 1 ]]
wce=$(conformance/adapters/setup.sh whatsapp-chat-exporter "$root")
"$runner" run --client "$wce/bin/python $root/conformance/adapters/whatsapp_chat_exporter.py" \
  --markdown "$tmp/whatsapp-chat-exporter.md" >/dev/null || [[ $? -eq 1 ]]

python3 - "$tmp" README.md <<'PY'
import pathlib, sys
tmp, readme = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
sections = [
    ("The reference implementation: `cargo run --release -p coffer-conformance -- run`", "reference"),
    ("wa-crypt-tools 0.1.0 (PyPI), `conformance/adapters/wa_crypt_tools.py`", "wa-crypt-tools"),
    ("whatsapp-chat-exporter 0.13.1 (PyPI), `conformance/adapters/whatsapp_chat_exporter.py`", "whatsapp-chat-exporter"),
]
def undated(text):
    """The report without its last line, the date (README results change only with them)."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("Run at ")).rstrip("\n") + "\n"
body = "".join(f"\n#### {title}\n\n{undated((tmp / (name + '.md')).read_text())}" for title, name in sections)
begin, end = "<!-- conformance-results:begin -->", "<!-- conformance-results:end -->"
text = readme.read_text()
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
readme.write_text(head + begin + "\n" + body + "\n" + end + tail)
PY
echo "README.md: conformance results written"
