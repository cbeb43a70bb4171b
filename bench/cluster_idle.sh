#!/usr/bin/env bash
# Server memory per idle v4 session with the Redis store against the
# embedded one, in one run: phases embedded, redis, embedded, redis, ...
# (--rounds pairs), each on a fresh server (release build, --mode test, the
# same flags; redis adds --store redis://127.0.0.1:PORT/0 --node-id 1 on a
# redis-server this script starts, FLUSHALLed before each redis phase) with
# N idle bench_connection clients over TCP (heartbeat 20 s). Per phase, as
# bench/ws_idle.sh: the server's VmRSS 2 s after start and after all N are
# online plus --hold seconds; (growth) / N. Beside it the kernel's
# (/proc/net/sockstat TCP mem, /proc/meminfo Slab; host-wide, both ends of
# each loopback connection) and, in redis phases, Redis's used_memory growth
# / N and its key count (the presence hashes lim:pres:{UID}).
#
#   bench/cluster_idle.sh [-n 20000] [--rounds 2] [--build-dir build-release]
#                         [--port 17800] [--hold 30] [--phase-timeout 180]
#                         [--tw-wait 70] [--out DIR] [--bench-arg X]...
#
# --bench-arg X (repeatable) is passed to bench_connection (e.g. -rate 1000
# for a slower ramp).
#
# redis-server runs in a temp dir with --save '' --appendonly yes
# --appendfsync always and is stopped at the end.
# Writes into --out (default bench/results/redis/idle-<date>): per phase P
# (1-embedded, 2-redis, ...) P-server.log, P-server.cmd, P-bench.log,
# P-bench.cmd, P-stat.json, P-redis-before.txt / P-redis-after.txt (INFO
# memory + keyspace); phases.csv; summary.md. Exit 0 when every phase had
# all N online.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$script_dir")
readonly script_dir repo_dir
readonly command_line="$0 $*"
die() { echo "cluster_idle.sh: $*" >&2; exit 2; }

extra_bench_args=(); clients=20000; rounds=2; build_dir="$repo_dir/build-release"; port=17800; hold=30; phase_timeout=180; tw_wait=70; out_dir=""
while (($# > 0)); do
    (($# >= 2)) || die "option $1 needs a value"
    case "$1" in
        -n | --clients) clients=$2 ;;
        --rounds) rounds=$2 ;;
        --build-dir) build_dir=$2 ;;
        --port) port=$2 ;;
        --hold) hold=$2 ;;
        --phase-timeout) phase_timeout=$2 ;;
        --tw-wait) tw_wait=$2 ;;
        --out) out_dir=$2 ;;
        --bench-arg) extra_bench_args+=("$2") ;;
        *) sed -n '2,/^set /s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    esac
    shift 2
done
[[ "$build_dir" == /* ]] || build_dir="$PWD/$build_dir"
readonly server_bin="$build_dir/limaoim" stat_bin="$build_dir/limaoim-stat" bench_bin="$build_dir/bench_connection"
for b in "$server_bin" "$stat_bin" "$bench_bin"; do [[ -x "$b" ]] || die "$b is missing"; done
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then die "need redis-server and redis-cli"; fi
[[ -n "$out_dir" ]] || out_dir="$repo_dir/bench/results/redis/idle-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
readonly max_conns=$((clients + clients / 8 + 64))
readonly sources=$(((clients + 19999) / 20000 > 8 ? (clients + 19999) / 20000 : 8))
readonly srcs="127.0.0.2-127.0.0.$((sources + 1))"
readonly bench_timeout=$((phase_timeout + hold + 60))
if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use"; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d /tmp/limaoim-cluster-idle-XXXXXX)
server_pid=""; bench_pid=""; redis_pid=""; instance=""
stop_pid() {
    local pid=$1 seconds=$2 tick
    [[ -n "$pid" && -d /proc/$pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((tick = 0; tick < seconds * 10; tick++)); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    if [[ -d /proc/$pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$bench_pid" 40
    stop_pid "$server_pid" 30
    [[ -n "$instance" ]] && rm -f "/dev/shm/limaoim-$instance"
    if [[ -n "$redis_pid" ]]; then
        redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
        stop_pid "$redis_pid" 10
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ulimit -n "$(ulimit -Hn)"

redis_port=$(free_port)
# Every node on a Redis store signs its events with the cluster secret (docs/REDIS.md "Security").
cluster_secret=$(openssl rand -hex 32)
mkdir -p "$tmp/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/redis" --save '' --appendonly yes --appendfsync always \
    --daemonize no --logfile "$tmp/redis/redis.log" &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
rcli() { redis-cli -p "$redis_port" "$@"; }
rcli ping | grep -q PONG || die "redis-server did not start"
redis_version=$(rcli info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p')

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
sockstat() { awk -v f="$1" '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == f) print $(i + 1) }' /proc/net/sockstat; }
slab_kib() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }
used_memory() { rcli info memory | sed -n 's/^used_memory:\([0-9]*\)\r$/\1/p'; }
bench_online() { { grep -o '^t=[0-9]*s online=[0-9]*' "$1" || true; } | tail -1 | sed 's/.*online=//'; }
wait_time_wait() {
    local waited
    for ((waited = 0; waited < tw_wait; waited++)); do (($(sockstat tw) < 500)) && return 0; sleep 1; done
}

echo "phase,store,round,online,ramp_s,rss_before_kib,rss_after_kib,rss_per_session_b,tcp_mem_per_session_b,slab_per_session_b,redis_used_before_b,redis_used_after_b,redis_per_session_b,redis_keys_after,tcp_tw_before,load1_before,status" \
    >"$out_dir/phases.csv"
failed=0
run_phase() {
    local index=$1 store=$2 round=$3 name="$1-$2"
    wait_time_wait
    local data="$tmp/data-$name"; mkdir -p "$data"
    instance="cidle-$$-$name"
    local -a args=(--mode test --addr 127.0.0.1 --port "$port" --ws-addr '' --http-addr '' --max-conns "$max_conns"
        --data-dir "$data" --instance "$instance")
    if [[ "$store" == redis ]]; then
        rcli flushall >/dev/null
        args+=(--store "redis://127.0.0.1:$redis_port/0" --node-id 1 --cluster-secret "$cluster_secret")
    fi
    local load1; load1=$(cut -d' ' -f1 /proc/loadavg)
    echo "$server_bin ${args[*]}" >"$out_dir/$name-server.cmd"
    "$server_bin" "${args[@]}" >"$out_dir/$name-server.log" 2>&1 &
    server_pid=$!
    local waited
    for ((waited = 0; waited < 300; waited++)); do
        [[ -d /proc/$server_pid ]] || die "the server exited at start: $out_dir/$name-server.log"
        ss -Hltn "sport = :$port" | grep -q . && break
        sleep 0.1
    done
    sleep 2
    local rss_before tcp_before slab_before tw_before redis_before="" redis_after="" redis_keys=""
    rss_before=$(rss_kib "$server_pid"); tcp_before=$(sockstat mem); slab_before=$(slab_kib); tw_before=$(sockstat tw)
    if [[ "$store" == redis ]]; then
        { rcli info memory; rcli info keyspace; } >"$out_dir/$name-redis-before.txt"
        redis_before=$(used_memory)
    fi
    local -a bargs=(-cids "1-$clients" -hostname 127.0.0.1 -port "$port" -heartbeat 20s -timeout "${bench_timeout}s" -srcs "$srcs")
    ((${#extra_bench_args[@]})) && bargs+=("${extra_bench_args[@]}")
    echo "$bench_bin ${bargs[*]}" >"$out_dir/$name-bench.cmd"
    "$bench_bin" "${bargs[@]}" >"$out_dir/$name-bench.log" 2>&1 &
    bench_pid=$!
    local started=$SECONDS online=0 status=ok
    while ((SECONDS - started < phase_timeout)); do
        sleep 1
        online=$(bench_online "$out_dir/$name-bench.log"); [[ -n "$online" ]] || online=0
        ((online >= clients)) && break
        [[ -d /proc/$bench_pid ]] || break
    done
    local ramp_s=$((SECONDS - started))
    ((online >= clients)) || { status="only $online of $clients online after ${ramp_s}s"; failed=$((failed + 1)); }
    sleep "$hold"
    local rss_after tcp_after slab_after online_after
    rss_after=$(rss_kib "$server_pid"); tcp_after=$(sockstat mem); slab_after=$(slab_kib)
    online_after=$(bench_online "$out_dir/$name-bench.log"); [[ -n "$online_after" ]] || online_after=0
    if [[ "$store" == redis ]]; then
        { rcli info memory; rcli info keyspace; } >"$out_dir/$name-redis-after.txt"
        redis_after=$(used_memory)
        redis_keys=$(rcli dbsize)
        { rcli --scan --pattern 'lim:pres:*' | wc -l; } >"$out_dir/$name-redis-presence-keys.txt"
        rcli hgetall "lim:pres:{1}" >>"$out_dir/$name-redis-presence-keys.txt" 2>&1 || true
        rcli memory usage "lim:pres:{1}" >>"$out_dir/$name-redis-presence-keys.txt" 2>&1 || true
    fi
    "$stat_bin" --instance "$instance" --json >"$out_dir/$name-stat.json" 2>&1 || true
    if [[ "$status" == ok ]] && ((online_after < clients)); then status="$online_after of $clients online at the end of the hold"; failed=$((failed + 1)); fi
    stop_pid "$bench_pid" 40; bench_pid=""
    stop_pid "$server_pid" 30; server_pid=""
    rm -f "/dev/shm/limaoim-$instance"; instance=""
    rm -rf "$data"
    local ramp; ramp=$(sed -n 's/^  ramp: all [0-9]* clients online after \([0-9.]*\)s.*/\1/p' "$out_dir/$name-bench.log" | head -1)
    [[ -n "$ramp" ]] || ramp=$ramp_s
    awk -v OFS=, -v phase="$index" -v store="$store" -v round="$round" -v online="$online_after" -v ramp="$ramp" \
        -v rb="$rss_before" -v ra="$rss_after" -v tb="$tcp_before" -v ta="$tcp_after" -v sb="$slab_before" -v sa="$slab_after" \
        -v n="$clients" -v xb="$redis_before" -v xa="$redis_after" -v keys="$redis_keys" -v tw="$tw_before" -v load1="$load1" \
        -v status="$status" 'BEGIN {
            print phase, store, round, online, ramp, rb, ra, sprintf("%.0f", (ra - rb) * 1024 / n), sprintf("%.0f", (ta - tb) * 4096 / n),
                sprintf("%.0f", (sa - sb) * 1024 / n), xb, xa, xb == "" ? "" : sprintf("%.0f", (xa - xb) / n), keys, tw, load1, "\"" status "\""
        }' >>"$out_dir/phases.csv"
    echo "phase $name: $(tail -1 "$out_dir/phases.csv")" >&2
}

started_at=$(date -Is)
phase=0
for ((round = 1; round <= rounds; round++)); do
    for store in embedded redis; do
        phase=$((phase + 1))
        run_phase "$phase" "$store" "$round"
    done
done

{
    echo "# Idle sessions: Redis store vs embedded, $clients v4 TCP sessions per phase"
    echo
    echo "date: $started_at; host: Linux $(uname -r), $(nproc) CPUs, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM; redis-server $redis_version (appendonly yes, appendfsync always, save '')"
    echo
    echo "command: \`$command_line\`"
    echo
    echo "server (embedded; redis adds \`--store redis://127.0.0.1:PORT/0 --node-id 1\`): \`$(cat "$out_dir/1-embedded-server.cmd")\`"
    echo
    echo "load: \`$(cat "$out_dir/1-embedded-bench.cmd")\`"
    echo
    echo "| phase | store | online | ramp s | server RSS before → after (MiB) | **server RSS / session** | kernel TCP mem / session | Slab / session | Redis used_memory / session | Redis keys after | load1 before | status |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F, 'NR > 1 { gsub(/"/, "", $17)
        printf "| %s | %s | %s | %s | %.1f → %.1f | **%s B** | %s B | %s B | %s | %s | %s | %s |\n", $1, $2, $4, $5, $6 / 1024, $7 / 1024, $8, $9, $10,
            $13 == "" ? "-" : $13 " B", $14 == "" ? "-" : $14, $16, $17 }' "$out_dir/phases.csv"
    echo
    python3 - "$out_dir/phases.csv" <<'EOF'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["status"] == "ok"]
med = {}
print("| medians (phases with all online) | server RSS / session (per round) | kernel TCP mem / session | Slab / session | Redis used_memory / session |")
print("|---|---|---|---|---|")
for s in ("embedded", "redis"):
    rs = [r for r in rows if r["store"] == s]
    if not rs: continue
    m = lambda k: statistics.median(float(r[k]) for r in rs) if all(r[k] for r in rs) else None
    med[s] = m("rss_per_session_b")
    red = m("redis_per_session_b")
    print(f"| {s} ({len(rs)} phases) | **{med[s]:.0f} B** ({', '.join(r['rss_per_session_b'] for r in rs)}) | {m('tcp_mem_per_session_b'):.0f} B | "
          f"{m('slab_per_session_b'):.0f} B | {'-' if red is None else f'{red:.0f} B'} |")
if len(med) == 2:
    print(f"| **redis − embedded** | **{med['redis'] - med['embedded']:+.0f} B** | | | |")
EOF
    echo
    echo "Server RSS / session: (VmRSS after the hold − VmRSS 2 s after start) / sessions; hold ${hold} s after all online (heartbeat 20 s)."
    echo "Redis used_memory / session: (INFO memory used_memory after the hold − 2 s after the node started) / sessions."
} >"$out_dir/summary.md"
cat "$out_dir/summary.md"
((failed == 0))
