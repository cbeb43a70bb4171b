#!/usr/bin/env bash
# Drives bench_message against a limaoim it starts itself on a fresh data dir.
#
#   bench_message.sh load --build-dir B [--durability D] [--workers N] -- BENCH_ARGS...
#       starts the server, runs bench_message BENCH_ARGS (port flags added), stops it.
#   bench_message.sh kill-test --build-dir B [--mode person|group] [--total N]
#                    [--kill-after N] [--durability D] [--workers N]
#       starts the server, bursts N SENDs, SIGKILLs the server (bench_message
#       does it itself after --kill-after OK SENDACKs), restarts it on the same
#       data dir and checks with bench_message --verify that every SENDACKed
#       message is stored exactly once with seqs 1..max. Exit 0 = passed.
set -euo pipefail

cmd=${1:-}; shift || true
build=build; durability=group; workers=2; mode=person; total=10000; kill_after=3000; keep=0
bench_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2;;
    --durability) durability=$2; shift 2;;
    --workers) workers=$2; shift 2;;
    --mode) mode=$2; shift 2;;
    --total) total=$2; shift 2;;
    --kill-after) kill_after=$2; shift 2;;
    --keep) keep=1; shift;;
    --) shift; bench_args=("$@"); break;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
[ "$cmd" = load ] || [ "$cmd" = kill-test ] || { sed -n '2,14p' "$0"; exit 2; }

server=$build/limaoim; bench=$build/bench/bench_message
[ -x "$bench" ] || bench=$build/bench_message
if [ ! -x "$server" ] || [ ! -x "$bench" ]; then echo "need $server and bench_message in $build" >&2; exit 2; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
data=$(mktemp -d /tmp/limaoim-bench-data-XXXXXX)
work=$(mktemp -d /tmp/limaoim-bench-XXXXXX)
pid=""
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  if [ "$keep" = 1 ]; then echo "kept $data and $work" >&2; else rm -rf "$data" "$work"; fi
}
trap cleanup EXIT

# Starts the server on $data; sets pid, port, http. Waits (10 s at most) for both listeners.
start_server() {
  port=$(free_port); http=$(free_port)
  "$server" --mode test --addr 127.0.0.1 --port "$port" --http-addr "127.0.0.1:$http" --data-dir "$data" \
    --durability "$durability" --workers "$workers" --instance "bm-$port" >>"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "server did not start; log:" >&2; cat "$work/server.log" >&2; exit 1
}

start_server
if [ "$cmd" = load ]; then
  set +e
  "$bench" --port "$port" --http-port "$http" "${bench_args[@]}"
  rc=$?
  kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=""
  exit $rc
fi

# kill-test
set +e
"$bench" --port "$port" --http-port "$http" --mode "$mode" --kill-test --kill-total "$total" \
  --acked-out "$work/acked.txt" --kill-pid "$pid" --kill-after "$kill_after" --duration 60 --drain 5 "${bench_args[@]}" \
  | tee "$work/burst.txt"
wait "$pid" 2>/dev/null; pid=""
set -e
acked=$(grep -vc '^#' "$work/acked.txt" || true)
echo "burst: $acked SENDACKed before the kill"
[ "$acked" -gt 0 ] || { echo "no SENDACK before the kill: nothing to verify" >&2; exit 1; }
start_server
set +e
"$bench" --http-port "$http" --verify "$work/acked.txt"
rc=$?
kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=""
exit $rc
