#!/usr/bin/env bash
# A queen and two hives on three network hosts of this machine, for trying rbee across network
# interfaces by hand (the tests use RbeeTestSupport's NetworkLab, which builds the same network).
#   scripts/netns-cluster.sh up      network namespaces rbns-q, rbns-h1, rbns-h2 on a bridge, with
#                                    198.18.99.1-3, this shell's host at 198.18.99.254; queen-rbee and
#                                    two rbee-hive from .build/debug, token on (RBEE_API_TOKEN, or
#                                    one made up and printed); logs in /tmp/rbns
#   scripts/netns-cluster.sh down    stops the daemons and removes every namespace and link it made
#   scripts/netns-cluster.sh cut h1 | mend h1 | delay h1 50   the link of a hive: down, up, slowed (tc netem)
# Needs root and iproute2.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=rbns
net=198.18.99
bin=${RBEE_BIN_DIR:-$PWD/.build/debug}
state=/tmp/rbns
hosts=(q h1 h2)

down() {
  for pidfile in "$state"/*.pid; do
    [ -e "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  ip link del "${prefix}-ta" 2>/dev/null || true
  for host in "${hosts[@]}" sw; do ip netns del "$prefix-$host" 2>/dev/null || true; done
}

up() {
  [ "$(id -u)" -eq 0 ] || { echo "netns-cluster: needs root" >&2; exit 1; }
  down
  mkdir -p "$state"
  ip netns add "$prefix-sw"
  ip -n "$prefix-sw" link add br0 type bridge
  ip -n "$prefix-sw" link set br0 up
  local index=1
  for host in "${hosts[@]}"; do
    ip netns add "$prefix-$host"
    ip link add "${prefix}-${index}a" type veth peer name "${prefix}-${index}b"
    ip link set "${prefix}-${index}a" netns "$prefix-$host"
    ip link set "${prefix}-${index}b" netns "$prefix-sw"
    ip -n "$prefix-sw" link set "${prefix}-${index}b" master br0 up
    ip -n "$prefix-$host" link set "${prefix}-${index}a" name eth0
    ip -n "$prefix-$host" addr add "$net.$index/24" dev eth0
    ip -n "$prefix-$host" link set eth0 up
    ip -n "$prefix-$host" link set lo up
    index=$((index + 1))
  done
  ip link add "${prefix}-ta" type veth peer name "${prefix}-tb"
  ip link set "${prefix}-tb" netns "$prefix-sw"
  ip -n "$prefix-sw" link set "${prefix}-tb" master br0 up
  ip addr add "$net.254/24" dev "${prefix}-ta"
  ip link set "${prefix}-ta" up

  export RBEE_API_TOKEN=${RBEE_API_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  local models=${RBEE_MODEL_DIR:-$HOME/.cache/rbee/models}
  ip netns exec "$prefix-q" "$bin/queen-rbee" --host "$net.1" --port 7833 --home "$state/q" --no-local-hive \
    >"$state/queen.log" 2>&1 &
  echo $! >"$state/queen.pid"
  for n in 1 2; do
    ip netns exec "$prefix-h$n" "$bin/rbee-hive" serve --host "$net.$((n + 1))" --port 7835 --home "$state/h$n" --name "h$n" \
      --queen-url "http://$net.1:7833" --model-dir "$models" --worker-binary "$bin/llm-worker-rbee" >"$state/h$n.log" 2>&1 &
    echo $! >"$state/h$n.pid"
  done
  echo "queen: http://$net.1:7833   hives: http://$net.2:7835 (h1), http://$net.3:7835 (h2)   logs: $state"
  echo "export RBEE_QUEEN_URL=http://$net.1:7833 RBEE_API_TOKEN=$RBEE_API_TOKEN"
}

host_index() { case "$1" in q) echo 1 ;; h1) echo 2 ;; h2) echo 3 ;; *) echo "unknown host $1" >&2; exit 2 ;; esac; }

case "${1:-}" in
  up) up ;;
  down) down ;;
  cut) host_index "$2" >/dev/null && ip -n "$prefix-$2" link set eth0 down ;;
  mend) host_index "$2" >/dev/null && ip -n "$prefix-$2" link set eth0 up ;;
  delay) host_index "$2" >/dev/null && ip netns exec "$prefix-$2" tc qdisc replace dev eth0 root netem delay "${3:-50}ms" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
