#!/usr/bin/env bash
# Runs schemathesis (a real OpenAPI client and fuzzer, from PyPI) against `coffer vault serve`
# on loopback, with spec/openapi.yaml. Every check runs except positive_data_acceptance:
# OPAQUE messages of the right base64 shape are still random group elements, which the vault
# must refuse (400 malformed), and no schema can say which bytes are valid points.
# Two passes: every operation with the tenant's token, then the admin-only operations
# (GET /v1/audit, DELETE /v1/users/{user}) with the tenant's admin token, so that their
# 200 answers are checked against the schema too, not only their refusals.
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
token=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
admin=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
(umask 077; printf '%s\n' "$token" > "$data/tenant.token"; printf '%s\n' "$admin" > "$data/admin.token")
printf '[[tenants]]\nname = "default"\ntoken_file = "tenant.token"\nadmin_token_file = "admin.token"\n' \
  > "$data/vault.toml"
"$coffer" vault serve --listen 127.0.0.1:0 --ksf argon2id:m=256,t=1,p=1 --user-per-minute 1000000 \
  --config "$data/vault.toml" --data "$data/vault" > "$out" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 50); do [[ -s "$out" ]] && break; sleep 0.1; done
url=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$out")
"$venv/bin/schemathesis" run spec/openapi.yaml --url "$url" -H "Authorization: Bearer $token" \
  --checks all --exclude-checks positive_data_acceptance --max-examples 100 --seed 1
"$venv/bin/schemathesis" run spec/openapi.yaml --url "$url" -H "Authorization: Bearer $admin" \
  --include-path-regex '^/v1/(audit|users/\{user\})$' \
  --checks all --exclude-checks positive_data_acceptance --max-examples 100 --seed 1
