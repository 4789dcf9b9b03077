#!/usr/bin/env bash
# A local three-site Coffer vault on loopback, to try the multi-site setup (spec/vault.md
# §6.1): a three-member etcd cluster and three vault nodes, each site with its own SoftHSM2
# token holding the same master key, moved from site 1 to sites 2 and 3 by the key ceremony
# (spec/hsm.md §6). Needs Debian etcd-server, etcd-client and softhsm2 (scripts/test.sh
# installs them) and a built coffer (COFFER_BIN, else the newer of target/release/coffer and
# target/debug/coffer).
#
#   scripts/cluster.sh up [DIR]         start, print the nodes, wait; Ctrl-C tears it down
#   scripts/cluster.sh up --detach DIR  start and return (then: scripts/cluster.sh down DIR)
#   scripts/cluster.sh down [DIR]       stop everything started in DIR and remove DIR
#
# Ports: etcd clients BASE+1..3, etcd peers BASE+11..13, vault nodes BASE+21..23, with
# BASE=${COFFER_CLUSTER_PORT_BASE:-23790}. DIR defaults to target/coffer-cluster.
set -Eeuo pipefail
umask 077
cd "$(dirname "$0")/.."

command=${1:-up}
shift || true
detach=0
if [[ "${1:-}" == --detach ]]; then
  detach=1
  shift
fi
dir=$(realpath -m "${1:-target/coffer-cluster}")
base=${COFFER_CLUSTER_PORT_BASE:-23790}
module=/usr/lib/softhsm/libsofthsm2.so

down() {
  # Only a directory this script made is removed.
  if [[ ! -e "$dir/.coffer-cluster" ]]; then
    echo "$dir was not made by $0: left alone" >&2
    return 1
  fi
  for pidfile in "$dir"/*.pid; do
    [[ -e "$pidfile" ]] || continue
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$dir"
  echo "cluster in $dir: stopped and removed"
}

if [[ "$command" == down ]]; then
  down
  exit 0
fi
if [[ "$command" != up ]]; then
  echo "usage: $0 up [--detach] [DIR] | down [DIR]" >&2
  exit 2
fi

for tool in etcd etcdctl softhsm2-util; do
  command -v "$tool" >/dev/null || {
    echo "$tool is missing: apt-get install etcd-server etcd-client softhsm2" >&2
    exit 1
  }
done
# COFFER_BIN, else the newer of the release and debug builds.
# The newer of the two builds; ls fails when one is missing, which is not an error here.
coffer=${COFFER_BIN:-$( (ls -t target/release/coffer target/debug/coffer 2>/dev/null || true) | head -1)}
[[ -n "$coffer" && -x "$coffer" ]] || {
  echo "no coffer binary: cargo build --release -p coffer" >&2
  exit 1
}
coffer=$(realpath "$coffer")
[[ -e "$dir" ]] && {
  echo "$dir exists: scripts/cluster.sh down $dir first" >&2
  exit 1
}
mkdir -p "$dir"
touch "$dir/.coffer-cluster"
trap 'echo "failed; tearing down" >&2; down' ERR
trap 'down; exit 130' INT TERM

# 1. etcd: three members.
initial=""
for i in 1 2 3; do initial+="${initial:+,}m$i=http://127.0.0.1:$((base + 10 + i))"; done
endpoints=""
for i in 1 2 3; do
  endpoints+="${endpoints:+,}127.0.0.1:$((base + i))"
  etcd --name "m$i" --data-dir "$dir/etcd-m$i" \
    --listen-client-urls "http://127.0.0.1:$((base + i))" \
    --advertise-client-urls "http://127.0.0.1:$((base + i))" \
    --listen-peer-urls "http://127.0.0.1:$((base + 10 + i))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((base + 10 + i))" \
    --initial-cluster "$initial" --initial-cluster-token "coffer-$base" \
    --initial-cluster-state new --log-level error >"$dir/etcd-m$i.log" 2>&1 &
  echo $! >"$dir/etcd-m$i.pid"
done
health() {
  ETCDCTL_API=3 etcdctl --endpoints "$endpoints" --dial-timeout=1s --command-timeout=1s \
    endpoint health >/dev/null 2>&1
}
for _ in $(seq 60); do
  health && break
  sleep 0.3
done
health || {
  cat "$dir"/etcd-m*.log >&2
  false
}

# 2. One SoftHSM2 token per site.
# The user PIN reaches coffer through COFFER_PKCS11_PIN, not the command line.
export COFFER_PKCS11_PIN=87654321
uri() { echo "pkcs11:token=site$1?module-path=$module"; }
for i in 1 2 3; do
  mkdir -p "$dir/site$i/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$dir/site$i/tokens" >"$dir/site$i/softhsm2.conf"
  SOFTHSM2_CONF="$dir/site$i/softhsm2.conf" softhsm2-util --init-token --free \
    --label "site$i" --so-pin 12345678 --pin 87654321 >/dev/null
done
at() { local i=$1; shift; SOFTHSM2_CONF="$dir/site$i/softhsm2.conf" "$coffer" "$@"; }

# 3. The key ceremony: site 1 makes the key; sites 2 and 3 receive it wrapped.
at 1 hsm init --exportable --hsm "$(uri 1)" >/dev/null
for i in 2 3; do
  at "$i" hsm transport-key --hsm "$(uri "$i")" --out "$dir/transport$i.pem" >/dev/null
  COFFER_PKCS11_SO_PIN=12345678 at 1 hsm trust --hsm "$(uri 1)" \
    --public-key "$dir/transport$i.pem" >/dev/null
  at 1 hsm export-wrapped --hsm "$(uri 1)" --transport "$dir/transport$i.pem" \
    --out "$dir/wrapped$i.json" >/dev/null
  at "$i" hsm import-wrapped --hsm "$(uri "$i")" --in "$dir/wrapped$i.json" >/dev/null
done

# 4. One tenant for every node, and the three nodes.
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/tenant.token"
chmod 600 "$dir/tenant.token"
printf '{"tenants": [{"name": "default", "token_file": "%s"}]}\n' "$dir/tenant.token" >"$dir/vault.json"
for i in 1 2 3; do
  SOFTHSM2_CONF="$dir/site$i/softhsm2.conf" "$coffer" vault serve \
    --listen "127.0.0.1:$((base + 20 + i))" --data "$dir/site$i/data" --hsm "$(uri "$i")" \
    --store "etcd://$endpoints" --config "$dir/vault.json" \
    >"$dir/vault$i.out" 2>"$dir/vault$i.log" &
  echo $! >"$dir/vault$i.pid"
done
for i in 1 2 3; do
  for _ in $(seq 100); do [[ -s "$dir/vault$i.out" ]] && break; sleep 0.1; done
  [[ -s "$dir/vault$i.out" ]] || { cat "$dir/vault$i.log" >&2; false; }
done
trap - ERR INT TERM

cat <<EOF
three-site Coffer vault in $dir
  etcd members:  $endpoints
  vault nodes:   http://127.0.0.1:$((base + 21))  http://127.0.0.1:$((base + 22))  http://127.0.0.1:$((base + 23))
  tenant token:  $dir/tenant.token
  note:          a test setup: etcd listens without TLS or authentication, so any local user
                 can change its records (spec/vault.md §6.1 and README "Several sites")
  try:           COFFER_KEY=KEY $coffer vault register --vault http://127.0.0.1:$((base + 21)) --token-file $dir/tenant.token --user alice
                 $coffer vault recover  --vault http://127.0.0.1:$((base + 23)) --token-file $dir/tenant.token --user alice
EOF
if [[ $detach == 1 ]]; then
  exit 0
fi
trap 'down; exit 0' INT TERM
echo "Ctrl-C stops it"
wait
