#!/usr/bin/env bash
# Builds and tests the Python package (reference/python) the way a user installs it: a fresh
# venv, `pip install ./reference/python` (maturin from PyPI builds the extension), then pytest
# on its tests. The wa-crypt-tools comparisons need COFFER_WA_CRYPT_TOOLS (set by
# scripts/test.sh) unless COFFER_SKIP_INTEROP=1. Prints pytest's summary line last.
#
# Usage: scripts/python-package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/target/python-package-venv"

rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  -c reference/python/tests/constraints.txt pytest
"$venv/bin/pip" install --quiet --disable-pip-version-check ./reference/python
"$venv/bin/python" -c 'import coffer; print("imported coffer", coffer.__version__, "from", coffer.__file__)'
cd reference/python
# -rs: every skip is named in the summary; -p no:cacheprovider: nothing written to the tree.
"$venv/bin/python" -m pytest -q -rs -p no:cacheprovider
cat "$root/target/python-package-bench.json" 2>/dev/null || true
