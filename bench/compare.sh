#!/usr/bin/env bash
# Races hubcat against its peers in one run and writes BENCHMARKS.md.
#
# Builds hubcat, the reference copy server (examples/copy_server.rs) and the two textbook Go
# servers (bench/peers/), installs ncat and socat if missing, runs every scenario RUNS times
# against every server (medians are reported), and writes the table and ratios to BENCHMARKS.md.
# Loopback only; every run is bounded by `hubcat bench --time-limit`.
#
# Two races: printing what clients send (issue 3: ingest, hold, churn, out of descriptors)
# and relaying it (issue 5: echo round trips, chat and broker fan-out in rooms of 500, 1,100
# and 5,000).
#
# Usage: bench/compare.sh [--quick]     (--quick: smaller sizes, one run; for trying the script)
#        ONLY="ingest hold-10000" bench/compare.sh   (re-run those cases, keep the other results)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
CLIENTS=100 LINES=20000 SLOW_LINES=500 HOLD_A=10000 HOLD_B=18900 CHURN=20000
# Held connections are measured once idle this long: hubcat parks them after 1 s and its
# allocator gives the freed memory back over about ten seconds.
HOLD_SETTLE=15s
ECHO_TIME=5s ROOM_MSGS=1000 BIG_ROOM=5000
if [ "${1:-}" = "--quick" ]; then
  RUNS=1 LINES=2000 SLOW_LINES=50 HOLD_A=1000 HOLD_B=2000 CHURN=2000
  ECHO_TIME=1s ROOM_MSGS=100 BIG_ROOM=1500
fi

need=()
command -v ncat >/dev/null || need+=(ncat)
command -v socat >/dev/null || need+=(socat)
command -v go >/dev/null || need+=(golang-go)
command -v prlimit >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release --quiet --bin hubcat --example copy_server --example echo_server --example relay_server
mkdir -p target/peers
export GOCACHE="${GOCACHE:-$PWD/target/go-cache}"
go build -o target/peers/textbook-server bench/peers/textbook-server/server.go
go build -o target/peers/textbook-improved bench/peers/textbook-improved/simple_tcp_server.go

HUBCAT=$PWD/target/release/hubcat
declare -A SERVERS=(
  [hubcat]="$HUBCAT serve 127.0.0.1 {port}"
  [hubcat-raw]="$HUBCAT serve 127.0.0.1 {port} --format raw"
  [textbook-go]="$PWD/target/peers/textbook-server 127.0.0.1:{port}"
  [textbook-improved-go]="$PWD/target/peers/textbook-improved 127.0.0.1 {port}"
  [ncat]="ncat -lk -m 20000 127.0.0.1 {port}"
  [socat]="socat -u TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=4096 STDOUT"
  [reference]="$PWD/target/release/examples/copy_server {port}"
)
ORDER=(hubcat hubcat-raw textbook-go textbook-improved-go ncat socat reference)

declare -A ECHOERS=(
  [hubcat-echo]="$HUBCAT serve 127.0.0.1 {port} --mode echo"
  [socat-pipe]="socat TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=4096 PIPE"
  [ncat-exec-cat]="ncat -lk -m 20000 -e /bin/cat 127.0.0.1 {port}"
  [reference-echo]="$PWD/target/release/examples/echo_server {port}"
)
ECHO_ORDER=(hubcat-echo socat-pipe ncat-exec-cat reference-echo)

declare -A RELAYS=(
  [hubcat-chat]="$HUBCAT serve 127.0.0.1 {port} --mode chat"
  [hubcat-broker]="$HUBCAT serve 127.0.0.1 {port} --mode broker"
  [ncat-chat]="ncat -lk --chat -m 20000 127.0.0.1 {port}"
  [ncat-broker]="ncat -lk --broker -m 20000 127.0.0.1 {port}"
  [reference-relay]="$PWD/target/release/examples/relay_server {port}"
)
RELAY_ORDER=(hubcat-chat hubcat-broker ncat-chat ncat-broker reference-relay)

RESULTS=target/bench-results.jsonl
ONLY=${ONLY:-}
if [ -n "$ONLY" ] && [ -f "$RESULTS" ]; then
  # Keep the results of the cases not re-run.
  grep -v -E "\"case\":\"($(echo "$ONLY" | tr ' ' '|'))\"" "$RESULTS" > "$RESULTS.keep" || true
  mv "$RESULTS.keep" "$RESULTS"
else
  : > "$RESULTS"
fi

# run NAME SCENARIO COMMAND ARGS...: one bench run, its JSON tagged with the server's name.
run() {
  local name=$1 scenario=$2 command=$3
  shift 3
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $CASE "* ]]; then
    return
  fi
  local out
  if out=$("$HUBCAT" bench "$scenario" --json --time-limit 180s --spawn "$command" "$@" 2>/dev/null); then
    printf '{"server":"%s","case":"%s","result":%s}\n' "$name" "$CASE" "$out" >> "$RESULTS"
  else
    printf '{"server":"%s","case":"%s","result":null}\n' "$name" "$CASE" >> "$RESULTS"
  fi
  printf '.' >&2
}

for round in $(seq "$RUNS"); do
  echo "round $round of $RUNS" >&2
  for name in "${ORDER[@]}"; do
    command=${SERVERS[$name]}
    lines=$LINES
    [ "$name" = textbook-improved-go ] && lines=$SLOW_LINES  # it writes one byte per syscall
    CASE=ingest run "$name" ingest "$command" --clients "$CLIENTS" --lines "$lines"
    [ "$name" = hubcat-raw ] && continue
    CASE=hold-$HOLD_A run "$name" hold "$command" --conns "$HOLD_A" --settle "$HOLD_SETTLE"
    # socat forks a process per connection; 18,900 of them is a test of the machine, not of socat.
    [ "$name" != socat ] && CASE=hold-$HOLD_B run "$name" hold "$command" --conns "$HOLD_B" --settle "$HOLD_SETTLE"
    CASE=churn run "$name" churn "$command" --conns "$CHURN" --concurrency 50
    CASE=nofile-256 run "$name" hold "prlimit --nofile=256 $command" --conns 300 --settle 2s
  done
  for name in "${ECHO_ORDER[@]}"; do
    CASE=echo-50 run "$name" echo "${ECHOERS[$name]}" --clients 50 --bytes 64 --duration "$ECHO_TIME"
  done
  for name in "${RELAY_ORDER[@]}"; do
    command=${RELAYS[$name]}
    CASE=room-500 run "$name" fanout "$command" --clients 500 --senders 5 --messages "$ROOM_MSGS" --rate 200
    CASE=room-1100 run "$name" fanout "$command" --clients 1100 --senders 5 --messages "$ROOM_MSGS" --rate 200
    # ncat's select() loop cannot hold 5,000 clients (it aborts past 1,020 descriptors).
    case $name in ncat-*) ;; *)
      CASE=room-$BIG_ROOM run "$name" fanout "$command" --clients "$BIG_ROOM" --senders 5 --messages 100 --rate 100
    esac
  done
  echo >&2
done

python3 bench/summarize.py "$RESULTS" "$RUNS" > BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2
