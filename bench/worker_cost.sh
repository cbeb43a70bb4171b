#!/usr/bin/env bash
# What a worker costs with no connection: starts the server with each set of
# flags in turn, waits until it listens, prints its plan, threads, RSS and
# RSS per worker, and stops it.
#   bench/worker_cost.sh [--build-dir DIR] [--port P] -- FLAGS... [-- FLAGS...]...
set -euo pipefail
build_dir=build-release
port=17666
while (($#)); do
    case $1 in
        --build-dir) build_dir=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "usage: $0 [--build-dir DIR] [--port P] -- FLAGS... [-- FLAGS...]" >&2; exit 2 ;;
    esac
done
server=$build_dir/limaoim
[ -x "$server" ] || { echo "worker_cost: no $server (meson setup $build_dir --buildtype=release && ninja -C $build_dir)" >&2; exit 2; }

measure() {  # measure FLAGS...
    local log pid rss threads plan workers
    log=$(mktemp)
    "$server" --mode test --addr 127.0.0.1 --port "$port" --instance "worker-cost-$port" \
        --http-addr '' --ws-addr '' --data-dir "$log.data" "$@" 2>"$log" &
    pid=$!
    for _ in $(seq 1 200); do
        grep -q "listening on" "$log" && break
        sleep 0.05
    done
    sleep 1
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    threads=$(awk '/^Threads/ {print $2}' "/proc/$pid/status")
    plan=$(grep -m1 "workers x" "$log" | sed 's/^limaoim: //')
    workers=$(echo "$plan" | awk '{print $1}')
    kill -TERM "$pid"
    wait "$pid" || true
    rm -rf "$log" "$log.data"
    printf '%-40s threads %4s  RSS %7s KiB  %6s KiB per worker  | %s\n' "$*" "$threads" "$rss" \
        "$((rss / workers))" "$plan"
}

while (($#)); do
    flags=()
    while (($#)) && [ "$1" != -- ]; do flags+=("$1"); shift; done
    (($#)) && shift
    measure "${flags[@]}"
done
