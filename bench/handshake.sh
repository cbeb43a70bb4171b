#!/usr/bin/env bash
# Handshakes per second with v4 crypto (the real X25519 exchange), measured
# three ways, side by side: the rounds interleave the three setups.
#
#   bench/handshake.sh [--build-dir DIR] [--rounds 3] [--clients 25000]
#                      [--port 6670] [--server-arg FLAG]...
#
# shared     server and bench_connection share both cores; every client makes
#            its own key pair and derives the shared secret, as the original
#            client does. What one machine does end to end.
# light      the same, with bench_connection -client-keys 64: the load
#            generator does no X25519 of its own, the server still does all
#            of its own (a fresh key pair and a shared secret per connection).
# per-core   as light, with the server pinned to CPU 0 and the load to CPU 1:
#            how many handshakes one core of the server completes while the
#            load has a core of its own.
#
# For each run: handshakes/s = clients / bench_connection's ramp time; server
# CPU per handshake = the server's CPU time from the start of the load until
# its auth_ok counter reaches --clients, divided by --clients (accept, CONNECT,
# X25519 twice, CONNACK, directory: the whole login). Prints one line per run
# and the medians. Needs 2 CPUs for the per-core runs.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$script_dir")
readonly script_dir repo_dir

die() {
    echo "handshake.sh: $*" >&2
    exit 2
}

build_dir=""
rounds=3
clients=25000
port=6670
server_args=()
while (($# > 0)); do
    (($# >= 2)) || die "usage: see the top of $0"
    case "$1" in
        --build-dir) build_dir="$2" ;;
        --rounds) rounds="$2" ;;
        --clients) clients="$2" ;;
        --port) port="$2" ;;
        --server-arg) server_args+=("$2") ;;
        *) die "unknown flag $1 (see the top of $0)" ;;
    esac
    shift 2
done
[[ "$rounds" =~ ^[1-9][0-9]*$ && "$clients" =~ ^[1-9][0-9]*$ && "$port" =~ ^[1-9][0-9]*$ ]] ||
    die "--rounds, --clients and --port take positive integers"
((clients <= 200000)) || die "--clients: at most 200000 (8 source addresses of ~28000 ports)"
if [[ -z "$build_dir" ]]; then
    build_dir="$repo_dir/build"
    [[ -d "$repo_dir/build-release" ]] && build_dir="$repo_dir/build-release"
fi
readonly server_bin="$build_dir/limaoim" stat_bin="$build_dir/limaoim-stat" bench_bin="$build_dir/bench_connection"
for binary in "$server_bin" "$stat_bin" "$bench_bin"; do
    [[ -x "$binary" ]] || die "$binary is missing: ninja -C $build_dir limaoim limaoim-stat bench_connection"
done
(($(nproc) >= 2)) || die "the per-core runs need 2 CPUs"
ss -Hltn "sport = :$port" | grep -q . && die "port $port is already in use"

ulimit -n "$(ulimit -Hn)"
clock_ticks_per_s=$(getconf CLK_TCK)
readonly clock_ticks_per_s
readonly max_conns=$((clients + clients / 8 + 64))
readonly bench_timeout_seconds=$((clients / 2000 + 10))

server_pid=""
results=$(mktemp)
cleanup() {
        if [[ -n "$server_pid" ]]; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

auth_ok() { "$stat_bin" --instance "hs-$port" --json 2>/dev/null | jq -r '.counters.auth_ok // 0' 2>/dev/null || echo 0; }

# run ROUND SETUP: one login ramp; appends "SETUP RATE US_PER_HANDSHAKE" to
# $results and prints it.
run() {
    local round=$1
    shift
    local setup=$1 server_cpu="" load_cpu="" client_keys=0
    case "$setup" in
        shared) ;;
        light) client_keys=64 ;;
        per-core) client_keys=64 server_cpu="taskset -c 0" load_cpu="taskset -c 1" ;;
    esac
    local log
    log=$(mktemp)
    # shellcheck disable=SC2086 # the taskset prefix is meant to split
    $server_cpu "$server_bin" --mode test --addr 127.0.0.1 --port "$port" --instance "hs-$port" \
        --http-addr '' --ws-addr '' --data-dir "$log.data" --max-conns "$max_conns" "${server_args[@]}" >"$log.server" 2>&1 &
    server_pid=$!
    local waited
    for ((waited = 0; waited < 300; waited++)); do
        ss -Hltn "sport = :$port" | grep -q . && break
        [[ -d /proc/$server_pid ]] || die "the server exited at start: $(cat "$log.server")"
        sleep 0.1
    done
    local ticks_before
    ticks_before=$(cpu_ticks "$server_pid")
    # shellcheck disable=SC2086
    $load_cpu "$bench_bin" -cids "1-$clients" -hostname 127.0.0.1 -port "$port" -srcs 127.0.5.2-127.0.5.9 \
        -timeout "${bench_timeout_seconds}s" -version 4 -client-keys "$client_keys" -quiet >"$log" 2>&1 &
    local bench_pid=$! ticks_online=""
    while [[ -d /proc/$bench_pid ]]; do
        if (($(auth_ok) >= clients)); then
            ticks_online=$(cpu_ticks "$server_pid")
            break
        fi
        sleep 0.02
    done
    local bench_status=0
    wait "$bench_pid" || bench_status=$?
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    server_pid=""
    local ramp
    ramp=$(sed -n 's/^  ramp: all [0-9]* clients online after \([0-9.]*\)s.*/\1/p' "$log")
    if ((bench_status != 0)) || [[ -z "$ramp" || -z "$ticks_online" ]]; then
        echo "handshake.sh: $setup run failed (bench exit $bench_status):" >&2
        cat "$log" >&2
        rm -rf "$log" "$log.server" "$log.data"
        exit 1
    fi
    rm -rf "$log" "$log.server" "$log.data"
    local line
    line=$(awk -v setup="$setup" -v clients="$clients" -v ramp="$ramp" -v ticks=$((ticks_online - ticks_before)) \
        -v hz="$clock_ticks_per_s" 'BEGIN { printf "%s %.0f %.1f\n", setup, clients / ramp, ticks / hz * 1e6 / clients }')
    echo "$line" >>"$results"
    echo "$line" | awk -v round="$round" \
        '{ printf "round %s: %-9s %7s handshakes/s  server CPU %6s us per handshake\n", round, $1, $2, $3 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

echo "date: $(date -Is); host: Linux $(uname -r), $(nproc) CPUs; $clients v4 logins per run; server: $server_bin ${server_args[*]}"
for ((round = 1; round <= rounds; round++)); do
    for setup in shared light per-core; do run "$round" "$setup"; done
done
echo "medians over $rounds rounds:"
for setup in shared light per-core; do
    rate=$(awk -v s="$setup" '$1 == s { print $2 }' "$results" | median)
    cost=$(awk -v s="$setup" '$1 == s { print $3 }' "$results" | median)
    printf '  %-9s %7.0f handshakes/s  server CPU %5.1f us per handshake\n' "$setup" "$rate" "$cost"
done
