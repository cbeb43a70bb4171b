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
#
#   Both take --webhook off|ok|hang (default off): with ok or hang a
#   webhook_sink (bench/webhook_sink.cpp) is started in that mode on a free
#   port and the server gets --webhook http://127.0.0.1:PORT/hook; the sink's
#   per-event counts are printed at the end. --server-arg X (repeatable)
#   passes X to limaoim. After the load (and --settle S seconds, default 1)
#   the script prints, before it stops the server, lines starting "# ":
#   the server's VmRSS, the data dir's size (du -sk, allocated and
#   apparent: the WAL is preallocated) and the webhook_*,
#   messages_stored_total and commits_total lines of GET /metrics.
#
#   --ws (load only): the server also gets a WebSocket listener
#   (--ws-addr 127.0.0.1:PORT, a free port) and bench_message --ws-port PORT,
#   so every client talks LiMaoIM inside WebSocket frames. Without it a server
#   that has --ws-addr gets --ws-addr '' (no listener on the default port
#   2122, which a second server on the host would collide on).
#   bench/ws_message.sh alternates TCP and WebSocket rounds.
#
#   --dialect limaoim|wukongim (default limaoim): with wukongim the server
#   also gets a WKProto listener (--wk-addr 127.0.0.1:PORT, a free port) and
#   bench_message --dialect wukongim --port PORT, so every client speaks
#   WuKongIM's WKProto (docs/WKPROTO.md); give the version in BENCH_ARGS
#   (--version 5, WKProto's latest). TCP only (not with --ws).
set -euo pipefail

cmd=${1:-}; shift || true
build=build; durability=group; workers=2; mode=person; total=10000; kill_after=3000; keep=0
webhook=off; settle=1; use_ws=0; dialect=limaoim
bench_args=(); server_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2;;
    --durability) durability=$2; shift 2;;
    --workers) workers=$2; shift 2;;
    --mode) mode=$2; shift 2;;
    --total) total=$2; shift 2;;
    --kill-after) kill_after=$2; shift 2;;
    --keep) keep=1; shift;;
    --webhook) webhook=$2; shift 2;;
    --server-arg) server_args+=("$2"); shift 2;;
    --settle) settle=$2; shift 2;;
    --ws) use_ws=1; shift;;
    --dialect) dialect=$2; shift 2;;
    --) shift; bench_args=("$@"); break;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
[ "$cmd" = load ] || [ "$cmd" = kill-test ] || { sed -n '2,35p' "$0"; exit 2; }
case "$dialect" in limaoim|wukongim) ;; *) echo "--dialect is limaoim or wukongim" >&2; exit 2;; esac
if [ "$dialect" = wukongim ] && [ "$use_ws" = 1 ]; then echo "--dialect wukongim is TCP only (no --ws)" >&2; exit 2; fi
if [ "$use_ws" = 1 ] && [ "$cmd" != load ]; then echo "--ws is for load runs" >&2; exit 2; fi
case "$webhook" in off|ok|hang) ;; *) echo "--webhook is off, ok or hang" >&2; exit 2;; esac

server=$build/limaoim; bench=$build/bench/bench_message
[ -x "$bench" ] || bench=$build/bench_message
if [ ! -x "$server" ] || [ ! -x "$bench" ]; then echo "need $server and bench_message in $build" >&2; exit 2; fi
sink=$build/bench/webhook_sink
if [ "$webhook" != off ] && [ ! -x "$sink" ]; then echo "need $sink for --webhook $webhook" >&2; exit 2; fi
has_ws_addr=0
case "$("$server" --help 2>/dev/null || true)" in *--ws-addr*) has_ws_addr=1;; esac
if [ "$use_ws" = 1 ] && [ "$has_ws_addr" = 0 ]; then echo "$server has no --ws-addr (no WebSocket listener)" >&2; exit 2; fi
if [ "$dialect" = wukongim ]; then
  case "$("$server" --help 2>/dev/null || true)" in *--wk-addr*) ;; *) echo "$server has no --wk-addr (no WKProto listener)" >&2; exit 2;; esac
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
data=$(mktemp -d /tmp/limaoim-bench-data-XXXXXX)
work=$(mktemp -d /tmp/limaoim-bench-XXXXXX)
pid=""; sink_pid=""
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  if [ -n "$sink_pid" ]; then kill -9 "$sink_pid" 2>/dev/null || true; fi
  if [ "$keep" = 1 ]; then echo "kept $data and $work" >&2; else rm -rf "$data" "$work"; fi
}
trap cleanup EXIT

# The webhook receiver, before the server (it keeps its counts over a kill-test's restart).
if [ "$webhook" != off ]; then
  "$sink" --mode "$webhook" >"$work/sink.out" 2>"$work/sink.err" &
  sink_pid=$!
  for _ in $(seq 100); do [ -s "$work/sink.out" ] && break; sleep 0.05; done
  sink_port=$(head -1 "$work/sink.out")
  [ -n "$sink_port" ] || { echo "webhook_sink did not start" >&2; cat "$work/sink.err" >&2; exit 1; }
  server_args=(--webhook "http://127.0.0.1:$sink_port/hook" "${server_args[@]}")
  echo "# webhook: $webhook, webhook_sink on 127.0.0.1:$sink_port"
fi

# Starts the server on $data; sets pid, port, http (and ws with --ws), and
# client_port (the port the clients use: --port, or the WKProto listener's).
# Waits (10 s at most) for the listeners.
start_server() {
  port=$(free_port); http=$(free_port); ws=$port; client_port=$port
  local -a ws_args=() wk_args=()
  if [ "$use_ws" = 1 ]; then ws=$(free_port); ws_args=(--ws-addr "127.0.0.1:$ws")
  elif [ "$has_ws_addr" = 1 ]; then ws_args=(--ws-addr ''); fi
  if [ "$dialect" = wukongim ]; then client_port=$(free_port); wk_args=(--wk-addr "127.0.0.1:$client_port"); fi
  "$server" --mode test --addr 127.0.0.1 --port "$port" --http-addr "127.0.0.1:$http" --data-dir "$data" \
    --durability "$durability" --workers "$workers" --instance "bm-$port" "${ws_args[@]}" "${wk_args[@]}" "${server_args[@]}" >>"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null &&
       (exec 3<>"/dev/tcp/127.0.0.1/$ws") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$client_port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "server did not start; log:" >&2; cat "$work/server.log" >&2; exit 1
}

# Memory and queue figures of the running server, then its stop (the stop's duration too:
# with a hanging webhook the calls in flight get --webhook-timeout-ms).
stop_server() {
  sleep "$settle"
  # Which loop ran (the start-up log names the I/O backend and why).
  grep -m1 -o "I/O backend[^;]*" "$work/server.log" | sed "s/^/# server: /" || true
  echo "# server VmRSS: $(awk '/^VmRSS/ {print $2, $3}' "/proc/$pid/status")  VmHWM: $(awk '/^VmHWM/ {print $2, $3}' "/proc/$pid/status")"
  # utime + stime since its start (warm-up included): divide by messages_stored_total below.
  echo "# server CPU: $(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat") s"
  echo "# data dir: $(du -sk "$data" | cut -f1) kB allocated, $(du -sk --apparent-size "$data" | cut -f1) kB apparent"
  curl -s --max-time 5 "http://127.0.0.1:$http/metrics" | grep -E '^limaoim_(webhook|messages_stored_total|commits_total|offline_receivers_total)' | sed 's/^/# metrics: /' || true
  local t0 t1
  t0=$(date +%s.%N)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=""
  t1=$(date +%s.%N)
  echo "# server stopped in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s; data dir after the stop: $(du -sk "$data" | cut -f1) kB allocated, $(du -sk --apparent-size "$data" | cut -f1) kB apparent"
}
# The sink's counts (one line per event).
stop_sink() {
  [ -n "$sink_pid" ] || return 0
  kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null; sink_pid=""
  tail -n +2 "$work/sink.out" | sed 's/^/# webhook_sink: /'
}

start_server
if [ "$cmd" = load ]; then
  set +e
  ws_bench_args=()
  if [ "$use_ws" = 1 ]; then ws_bench_args=(--ws-port "$ws"); echo "# WebSocket: server --ws-addr 127.0.0.1:$ws, bench_message --ws-port $ws"; fi
  if [ "$dialect" = wukongim ]; then echo "# WKProto: server --wk-addr 127.0.0.1:$client_port, bench_message --dialect wukongim"; fi
  "$bench" --port "$client_port" --dialect "$dialect" --http-port "$http" "${ws_bench_args[@]}" "${bench_args[@]}"
  rc=$?
  stop_server
  stop_sink
  exit $rc
fi

# kill-test
set +e
"$bench" --port "$client_port" --dialect "$dialect" --http-port "$http" --mode "$mode" --kill-test --kill-total "$total" \
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
stop_server
stop_sink
exit $rc
