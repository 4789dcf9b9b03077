#!/usr/bin/env bash
# Runs schemathesis (a real OpenAPI client and fuzzer, from PyPI) against `coffer vault serve`
# on loopback, with spec/openapi.yaml. Every check runs except positive_data_acceptance:
# OPAQUE messages of the right base64 shape are still random group elements, which the vault
# must refuse (400 malformed), and no schema can say which bytes are valid points.
# Usage: scripts/schemathesis.sh [COFFER_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
coffer=${1:-target/release/coffer}
venv=.venv/schemathesis
if [[ ! -x "$venv/bin/schemathesis" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
data=$(mktemp -d)
out="$data/serve.out"
"$coffer" vault serve --listen 127.0.0.1:0 --ksf argon2id:m=256,t=1,p=1 --user-per-minute 1000000 \
  --data "$data/vault" > "$out" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 50); do [[ -s "$out" ]] && break; sleep 0.1; done
url=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$out")
token=$(cat "$data/vault/tenant-default.token")
"$venv/bin/schemathesis" run spec/openapi.yaml --url "$url" -H "Authorization: Bearer $token" \
  --checks all --exclude-checks positive_data_acceptance --max-examples 100 --seed 1
