#!/usr/bin/env bash
# Cluster scenarios on one machine (loopback only; every run ends by itself).
#
#   cmd/chatbench/cluster.sh rooms     one room: a chatd alone, one node of a cluster, three nodes
#                                      (100 clients/10 senders max rate, 1000 clients/200 msg/s)
#   cmd/chatbench/cluster.sh scale     N nodes x PER idle clients (default 6 x 16700: 100,200
#                                      connections), one chatbench process per node; the last one
#                                      sends a message that every client must receive
#
# Needs nats-server on PATH or in $(go env GOPATH)/bin:
#   go install github.com/nats-io/nats-server/v2@v2.15.3
# For 100k connections over loopback raise the kernel's packet backlog first, or keepalive probes
# dropped in bursts end connections (see README): sysctl -w net.core.netdev_max_backlog=100000
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$(mktemp -d)
go build -o "$B/chatd" ./cmd/chatd
go build -o "$B/chatbench" ./cmd/chatbench
NS=$(command -v nats-server || echo "$(go env GOPATH)/bin/nats-server")
FLAGS="-data :memory: -shop=false -rate -1 -max-conns-per-ip -1 -conn-rate -1 -log-level warn"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$B"; }
trap cleanup EXIT

startnats() {
  rm -rf "$B/js"; "$NS" -js -sd "$B/js" -a 127.0.0.1 -p 4222 >/dev/null 2>&1 & NSP=$!; pids+=($NSP)
  until (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; do sleep 0.1; done
}
startnode() { # name tcp http [debug]
  "$B/chatd" $FLAGS -max-conns 20000 -nats nats://127.0.0.1:4222 -node "$1" -tcp "127.0.0.1:$2" -http "127.0.0.1:$3" ${4:+-debug-addr 127.0.0.1:$4} &
  pids+=($!); LAST=$!
  until (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null; do sleep 0.1; done
}
stopall() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); }

rooms() {
  bench() { # label pids tcps
    "$B/chatbench" -pid "$2" -tcp "$3" -name-prefix "m$RANDOM" -clients 100 -senders 10 -duration 10s | sed "s/^/$1 max: /" | grep -v '^.* max: {'
    "$B/chatbench" -pid "$2" -tcp "$3" -name-prefix "l$RANDOM" -clients 1000 -senders 1 -rate 200 -duration 10s | sed "s/^/$1 p99: /" | grep -v '^.* p99: {'
  }
  "$B/chatd" $FLAGS -max-conns -1 -tcp 127.0.0.1:8000 -http 127.0.0.1:8080 & pids+=($!); P=$!
  until (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null; do sleep 0.1; done
  bench alone "$P" 127.0.0.1:8000; stopall
  startnats; startnode n1 8001 8081; bench "1 node" "$LAST,$NSP" 127.0.0.1:8001; stopall
  startnats; startnode n1 8001 8081; P1=$LAST; startnode n2 8002 8082; P2=$LAST; startnode n3 8003 8083; P3=$LAST
  bench "3 nodes" "$P1,$P2,$P3,$NSP" 127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003; stopall
}

scale() {
  local n=${N:-6} per=${PER:-16700} node=()
  startnats
  for i in $(seq 1 "$n"); do startnode "n$i" $((9010 + i)) $((9110 + i)) $((9210 + i)); node+=("$LAST"); done
  # One listener after another (their connect storms do not overlap), each waiting for the probe.
  for i in $(seq 1 $((n - 1))); do
    "$B/chatbench" -probe-listen -senders 0 -clients "$per" -sources 8 -name-prefix "p${i}x" -tcp "127.0.0.1:$((9010 + i))" \
      -pid "${node[$((i - 1))]}" -settle 3s -gc-url "http://127.0.0.1:$((9210 + i))/debug/freeosmemory" >"$B/out$i" 2>"$B/err$i" &
    pids+=($!)
    until grep -q "waiting for a probe" "$B/err$i"; do kill -0 $! 2>/dev/null || { cat "$B/err$i"; exit 1; }; sleep 1; done
  done
  "$B/chatbench" -senders 0 -clients "$per" -sources 8 -name-prefix "p${n}x" -tcp "127.0.0.1:$((9010 + n))" \
    -pid "${node[$((n - 1))]}" -settle 3s -gc-url "http://127.0.0.1:$((9210 + n))/debug/freeosmemory" >"$B/out$n"
  wait "${pids[@]:$((n + 1))}" 2>/dev/null || true
  for i in $(seq 1 "$n"); do echo "node $i:"; grep -E "connect|RSS|reached" "$B/out$i"; done
  echo "nats-server $(grep VmRSS /proc/$NSP/status)"
}

"${1:?usage: cluster.sh rooms|scale}"
