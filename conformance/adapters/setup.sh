#!/usr/bin/env bash
# Installs a third-party tool that an adapter of this folder drives, from PyPI, at a pinned
# version with every dependency pinned too (constraints-NAME.txt, a `pip freeze` of a
# working install), in its own venv ROOT/.venv/NAME (made if missing, left as it is when it already
# holds the pinned versions), and prints the venv's path on stdout (pip's output goes to stderr).
#
# Usage: conformance/adapters/setup.sh NAME ROOT
#   NAME: wa-crypt-tools          -> adapter: wa_crypt_tools.py VENV/bin/wadecrypt
#         whatsapp-chat-exporter  -> adapter: VENV/bin/python whatsapp_chat_exporter.py
#   ROOT: the repository root
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 wa-crypt-tools|whatsapp-chat-exporter REPO_ROOT" >&2
  exit 2
fi
name=$1
root=$2

case "$name" in
  wa-crypt-tools)
    pins=("wa-crypt-tools==0.1.0")
    ;;
  whatsapp-chat-exporter)
    # The crypt15 extra (pycryptodome, javaobj-py3), pinned with the tool.
    pins=("whatsapp-chat-exporter==0.13.1" "pycryptodome==4.4.0" "javaobj-py3==0.6.1")
    ;;
  *)
    echo "$0: unknown tool '$name' (wa-crypt-tools or whatsapp-chat-exporter)" >&2
    exit 2
    ;;
esac

venv="$root/.venv/$name"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv" >&2
fi
# Install only when some NAME==VERSION is not what the venv holds.
constraints="$(cd "$(dirname "$0")" && pwd)/constraints-$name.txt"
mapfile -t locked < "$constraints"
installed=$("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | tr '[:upper:]_' '[:lower:]-')
missing=0
for pin in "${locked[@]}"; do
  if ! grep -qxF "$(tr '[:upper:]_' '[:lower:]-' <<<"$pin")" <<<"$installed"; then
    missing=1
  fi
done
if [[ $missing -eq 1 ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$constraints" "${pins[@]}" >&2
fi
echo "$venv"
