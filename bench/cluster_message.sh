#!/usr/bin/env bash
# Person-to-person messaging across limaoim nodes on one Redis, beside the
# embedded engine, in one run: --rounds rounds of the configurations
# (default "embedded redis1 redis2 redis3"), alternated, each run on fresh
# state (a fresh data dir; Redis FLUSHALL). redisN = N nodes (--store
# redis://..., --node-id 1..N) and bench_message --ports P1,..,PN: sender i
# on node i mod N, its receiver on node (i+1) mod N, so with N >= 2 every
# message is stored on one node and delivered by another (redis1: both on
# the one node).
#
#   bench/cluster_message.sh [--rounds 3] [--build-dir build-release] [--workers 2]
#       [--durability group] [--configs "embedded redis1 redis2 redis3"]
#       [--out DIR] [-- BENCH_MESSAGE_ARGS...]
#
# The script starts its own redis-server on a free port in a temp dir
# (--save '' --appendonly yes --appendfsync always: the durable setting
# docs/REDIS.md recommends) and stops it at the end.
#
# Per run R-CONFIG in --out: bench.txt (bench_message's output), node-K.log,
# node-K.cmd, node-K-stat.json (limaoim-stat --json after the load),
# node-K-metrics.txt (GET /metrics), node-K-rss.txt; for Redis runs
# redis-before.txt / redis-after.txt (INFO commandstats, stats, cpu, memory
# just before bench_message starts and just after it ends, so logins, the
# load and the drain are inside); samples.txt (once a second during the
# load: each node's fanout_queue, commit_queue and cluster event counters
# from limaoim-stat, and Redis's CLIENT LIST omem of the subscribers).
# runs.csv (one row per run), per-command
# rows in commands.csv, summary.md (tables and medians).
# Exit 0 when every run was clean (bench_message exit 0).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$script_dir")
readonly script_dir repo_dir
readonly command_line="$0 $*"

rounds=3
build_dir="$repo_dir/build-release"
durability=group
workers=2
configs="embedded redis1 redis2 redis3"
out_dir=""
bench_args=(--mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4)
while (($# > 0)); do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --build-dir) build_dir=$2; shift 2 ;;
        --durability) durability=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --configs) configs=$2; shift 2 ;;
        --out) out_dir=$2; shift 2 ;;
        --) shift; bench_args=("$@"); break ;;
        *) sed -n '2,/^set /s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds needs a positive integer" >&2; exit 2; }
[[ "$build_dir" == /* ]] || build_dir="$PWD/$build_dir"
server_bin="$build_dir/limaoim"; stat_bin="$build_dir/limaoim-stat"; bench_bin="$build_dir/bench/bench_message"
[[ -x "$bench_bin" ]] || bench_bin="$build_dir/bench_message"
for b in "$server_bin" "$stat_bin" "$bench_bin"; do [[ -x "$b" ]] || { echo "missing $b" >&2; exit 2; }; done
case "$("$bench_bin" --help 2>&1 || true)" in *--ports*) ;; *) echo "$bench_bin has no --ports" >&2; exit 2 ;; esac
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then echo "need redis-server and redis-cli" >&2; exit 2; fi
[[ -n "$out_dir" ]] || out_dir="$repo_dir/bench/results/redis/message-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d /tmp/limaoim-cluster-msg-XXXXXX)
redis_pid=""; node_pids=(); instances=()
stop_pid() {  # SIGTERM, up to $2 s, then SIGKILL
    local pid=$1 seconds=$2 tick
    [[ -n "$pid" && -d /proc/$pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((tick = 0; tick < seconds * 10; tick++)); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    if [[ -d /proc/$pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
}
stop_nodes() {
    local p i
    for p in "${node_pids[@]}"; do stop_pid "$p" 30; done
    node_pids=()
    for i in "${instances[@]}"; do rm -f "/dev/shm/limaoim-$i"; done
    instances=()
}
cleanup() {
    stop_nodes
    if [[ -n "$redis_pid" ]]; then
        redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
        stop_pid "$redis_pid" 10
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

redis_port=$(free_port)
# Every node on a Redis store signs its events with the cluster secret (docs/REDIS.md "Security").
cluster_secret=$(openssl rand -hex 32)
mkdir -p "$tmp/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/redis" --save '' --appendonly yes --appendfsync always \
    --daemonize no --logfile "$tmp/redis/redis.log" &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
redis-cli -p "$redis_port" ping | grep -q PONG || { echo "redis-server did not start" >&2; exit 1; }
rcli() { redis-cli -p "$redis_port" "$@"; }
redis_version=$(rcli info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p')
echo "redis-server $redis_version on 127.0.0.1:$redis_port: save '' appendonly $(rcli config get appendonly | tail -1) appendfsync $(rcli config get appendfsync | tail -1)" \
    | tee "$out_dir/redis.txt"

# start_nodes NAME N: N nodes (0 = one embedded node); sets ports, https, node_pids.
start_nodes() {
    local name=$1 n=$2 k count=$2
    ports=(); https=()
    ((count == 0)) && count=1
    for ((k = 1; k <= count; k++)); do
        local port http instance data
        port=$(free_port); http=$(free_port); instance="cm-$$-$name-$k"; data="$tmp/data-$name-$k"
        mkdir -p "$data"
        local -a args=(--mode test --addr 127.0.0.1 --port "$port" --http-addr "127.0.0.1:$http" --ws-addr ''
            --data-dir "$data" --durability "$durability" --workers "$workers" --instance "$instance")
        ((n > 0)) && args+=(--store "redis://127.0.0.1:$redis_port/0" --node-id "$k" --cluster-secret "$cluster_secret")
        echo "$server_bin ${args[*]}" >"$out_dir/$name/node-$k.cmd"
        "$server_bin" "${args[@]}" >"$out_dir/$name/node-$k.log" 2>&1 &
        node_pids+=($!); instances+=("$instance"); ports+=("$port"); https+=("$http")
    done
    for ((k = 0; k < count; k++)); do
        local ok=0
        for _ in $(seq 300); do
            if (exec 3<>"/dev/tcp/127.0.0.1/${ports[k]}") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/${https[k]}") 2>/dev/null; then ok=1; break; fi
            [[ -d /proc/${node_pids[k]} ]] || break
            sleep 0.1
        done
        ((ok)) || { echo "node $((k + 1)) of $name did not start: $out_dir/$name/node-$((k + 1)).log" >&2; return 1; }
    done
    if ((n > 0)); then  # every node registered (each publishes only to the live nodes it lists)
        for _ in $(seq 100); do
            (($(rcli --scan --pattern 'lim:node:*' | wc -l) >= n)) && break
            sleep 0.1
        done
        sleep 1.5  # one registry refresh: each node has read the others
    fi
}

echo "round,config,nodes,exit,online,delivered,delivered_per_s,sends_per_s,sendack_p50_us,sendack_p99_us,recv_p50_us,recv_p99_us,missing,duplicates,errors,bad,unanswered,commit_conflicts,cluster_events_dropped,node_log_errors,redis_cmds_per_msg,redis_in_b_per_msg,redis_out_b_per_msg,redis_cpu_s,redis_used_memory_b,node_rss_kib,load1_before" \
    >"$out_dir/runs.csv"
echo "round,config,command,calls,calls_per_msg,usec_per_call" >"$out_dir/commands.csv"
all_clean=true
started_at=$(date -Is)
info_val() { sed -n "s/^$2:\([0-9.]*\)\r\{0,1\}$/\1/p" "$1" | head -1; }
for ((round = 1; round <= rounds; round++)); do
    for config in $configs; do
        case "$config" in
            embedded) n=0 ;;
            redis[1-9]) n=${config#redis} ;;
            *) echo "unknown config $config" >&2; exit 2 ;;
        esac
        name="$round-$config"
        mkdir -p "$out_dir/$name"
        load1=$(cut -d' ' -f1 /proc/loadavg)
        if ((n > 0)); then rcli flushall >/dev/null; rcli config resetstat >/dev/null; fi
        status=0
        start_nodes "$name" "$n" || { all_clean=false; stop_nodes; continue; }
        port_list=$(IFS=,; echo "${ports[*]}")
        if ((n > 0)); then rcli info all >"$out_dir/$name/redis-before.txt"; fi
        echo "$bench_bin --port ${ports[0]} --http-port ${https[0]} --ports $port_list ${bench_args[*]}" >"$out_dir/$name/bench.cmd"
        timeout 300 "$bench_bin" --port "${ports[0]}" --http-port "${https[0]}" --ports "$port_list" "${bench_args[@]}" \
            >"$out_dir/$name/bench.txt" 2>&1 &
        bench_pid=$!
        # Once a second while the load runs: each node's fan-out and commit queues
        # and, with Redis, the output buffer Redis holds for each subscriber (omem).
        for ((tick = 0; tick < 300; tick++)); do
            [[ -d /proc/$bench_pid ]] || break
            {
                echo "t=$tick"
                for ((k = 0; k < ${#instances[@]}; k++)); do
                    echo "node $((k + 1)): $("$stat_bin" --instance "${instances[k]}" --json 2>/dev/null \
                        | grep -oE '"(fanout_queue|commit_queue|cluster_events_in|cluster_events_out|cluster_events_dropped)": [0-9]+' | tr '\n' ' ')"
                done
                if ((n > 0)); then rcli client list | grep -E ' (sub|psub)=[1-9]' | grep -oE 'id=[0-9]+|sub=[0-9]+|qbuf=[0-9]+|omem=[0-9]+|tot-mem=[0-9]+' | paste -sd' ' - || true; fi
            } >>"$out_dir/$name/samples.txt" 2>&1 || true
            sleep 1
        done
        wait "$bench_pid" || status=$?
        if ((n > 0)); then rcli info all >"$out_dir/$name/redis-after.txt"; fi
        sleep 1
        conflicts=0; dropped=0; rss_total=0; log_errors=0
        for ((k = 1; k <= ${#node_pids[@]}; k++)); do
            pid=${node_pids[k - 1]}
            awk '/^VmRSS|^VmHWM/' "/proc/$pid/status" >"$out_dir/$name/node-$k-rss.txt" 2>/dev/null || true
            rss_total=$((rss_total + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
            "$stat_bin" --instance "${instances[k - 1]}" --json >"$out_dir/$name/node-$k-stat.json" 2>&1 || true
            curl -s --max-time 5 "http://127.0.0.1:${https[k - 1]}/metrics" >"$out_dir/$name/node-$k-metrics.txt" || true
            c=$(python3 -c 'import json,sys
def find(o, key):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == key and isinstance(v, (int, float)): return v
            r = find(v, key)
            if r is not None: return r
    return None
try:
    d = json.load(open(sys.argv[1]))
    print(int(find(d, "commit_conflicts") or 0), int(find(d, "cluster_events_dropped") or 0))
except Exception: print(0, 0)' "$out_dir/$name/node-$k-stat.json")
            conflicts=$((conflicts + ${c% *})); dropped=$((dropped + ${c#* }))
        done
        stop_nodes
        for ((k = 1; k <= ${#ports[@]}; k++)); do
            e=$(grep -ciE 'error|warn|fail|conflict|drop' "$out_dir/$name/node-$k.log" || true)
            log_errors=$((log_errors + e))
        done
        ((status == 0)) || all_clean=false
        json=$(grep '^{' "$out_dir/$name/bench.txt" | tail -1 || true)
        [[ -n "$json" ]] || json='{}'
        cmds_per_msg=""; in_per=""; out_per=""; rcpu=""; rmem=""
        delivered=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("delivered", 0))' "$json")
        if ((n > 0)); then
            read -r cmds_per_msg in_per out_per rcpu rmem < <(python3 - "$out_dir/$name/redis-before.txt" "$out_dir/$name/redis-after.txt" \
                "$delivered" "$round" "$config" "$out_dir/commands.csv" <<'EOF'
import sys
def parse(path):
    stats, cmds = {}, {}
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if line.startswith("cmdstat_"):
            name, rest = line[8:].split(":", 1)
            kv = dict(x.split("=") for x in rest.split(","))
            cmds[name] = (int(kv["calls"]), float(kv["usec"]))
        elif ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            stats[k] = v
    return stats, cmds
sb, cb = parse(sys.argv[1]); sa, ca = parse(sys.argv[2])
msgs = max(int(sys.argv[3]), 1)
total = 0
with open(sys.argv[6], "a") as out:
    for name in sorted(ca, key=lambda k: -(ca[k][0] - cb.get(k, (0, 0))[0])):
        calls = ca[name][0] - cb.get(name, (0, 0))[0]
        usec = ca[name][1] - cb.get(name, (0, 0))[1]
        if calls <= 0: continue
        total += calls
        out.write(f"{sys.argv[4]},{sys.argv[5]},{name},{calls},{calls / msgs:.4f},{usec / calls:.2f}\n")
d = lambda k: float(sa.get(k, 0)) - float(sb.get(k, 0))
cpu = d("used_cpu_sys") + d("used_cpu_user")
print(f"{total / msgs:.3f} {d('total_net_input_bytes') / msgs:.1f} {d('total_net_output_bytes') / msgs:.1f} {cpu:.2f} {int(sa.get('used_memory', 0))}")
EOF
            )
        fi
        python3 - "$json" "$round" "$config" "$n" "$status" "$conflicts" "$dropped" "$log_errors" "$cmds_per_msg" "$in_per" "$out_per" \
            "$rcpu" "$rmem" "$rss_total" "$load1" >>"$out_dir/runs.csv" <<'EOF'
import json, sys
j = json.loads(sys.argv[1]); a = sys.argv
g = lambda *path: (lambda o: o)(__import__("functools").reduce(lambda o, k: o.get(k, {}) if isinstance(o, dict) else {}, path, j))
v = lambda *path: "" if g(*path) == {} else g(*path)
print(",".join(str(x) for x in [a[2], a[3], max(int(a[4]), 1), a[5], v("online"), v("delivered"),
      round(j["delivered_per_s"]) if "delivered_per_s" in j else "", round(j["sends_per_s"]) if "sends_per_s" in j else "",
      v("sendack_us", "p50"), v("sendack_us", "p99"), v("recv_us", "p50"), v("recv_us", "p99"),
      v("missing"), v("duplicates"), v("errors"), v("bad"), v("unanswered"), a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]))
EOF
        echo "run $name: $(tail -1 "$out_dir/runs.csv")" >&2
    done
done

{
    echo "# Person to person across nodes on one Redis, beside the embedded engine"
    echo
    echo "date: $started_at; host: Linux $(uname -r), $(nproc) CPUs, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM; redis-server $redis_version (appendonly yes, appendfsync always, save '')"
    echo
    echo "command: \`$command_line\`"
    echo
    echo "bench_message arguments: \`${bench_args[*]}\` (+ \`--ports\` the nodes' ports); nodes: --durability $durability --workers $workers"
    echo
    python3 - "$out_dir/runs.csv" "$out_dir/commands.csv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
configs = list(dict.fromkeys(r["config"] for r in rows))
print("| round | config | nodes | exit | delivered msgs/s | SENDACK p50/p99 ms | RECV p50/p99 ms | missing | dup | errors | conflicts | events dropped | node log lines matching error/warn | Redis cmds/msg | Redis in/out B/msg | Redis CPU s | load1 before |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
ms = lambda x: f"{int(x) / 1000:.0f}" if x else "-"
for r in rows:
    print(f"| {r['round']} | {r['config']} | {r['nodes']} | {r['exit']} | {r['delivered_per_s']} | {ms(r['sendack_p50_us'])} / {ms(r['sendack_p99_us'])} | "
          f"{ms(r['recv_p50_us'])} / {ms(r['recv_p99_us'])} | {r['missing']} | {r['duplicates']} | {r['errors']} | {r['commit_conflicts']} | "
          f"{r['cluster_events_dropped']} | {r['node_log_errors']} | {r['redis_cmds_per_msg'] or '-'} | "
          f"{r['redis_in_b_per_msg'] or '-'} / {r['redis_out_b_per_msg'] or '-'} | {r['redis_cpu_s'] or '-'} | {r['load1_before']} |")
print()
med = {}
print("| medians | delivered msgs/s (per round) | vs embedded | SENDACK p50 / p99 ms | RECV p50 / p99 ms | Redis cmds/msg | Redis in / out B/msg |")
print("|---|---|---|---|---|---|---|")
def m(rs, k):
    vals = [float(r[k]) for r in rs if r[k] not in ("", None)]
    return statistics.median(vals) if vals else None
for c in configs:
    rs = [r for r in rows if r["config"] == c]
    med[c] = m(rs, "delivered_per_s")
for c in configs:
    rs = [r for r in rows if r["config"] == c]
    base = med.get("embedded")
    ratio = f"{med[c] / base:.2f}" if base and med[c] else "-"
    f = lambda k, d=1000: f"{m(rs, k) / d:.0f}" if m(rs, k) is not None else "-"
    g = lambda k: f"{m(rs, k):.2f}" if m(rs, k) is not None else "-"
    print(f"| {c} | **{med[c]:.0f}** ({', '.join(r['delivered_per_s'] for r in rs)}) | {ratio} | {f('sendack_p50_us')} / {f('sendack_p99_us')} | "
          f"{f('recv_p50_us')} / {f('recv_p99_us')} | {g('redis_cmds_per_msg')} | {f('redis_in_b_per_msg', 1)} / {f('redis_out_b_per_msg', 1)} |")
print()
cmds = list(csv.DictReader(open(sys.argv[2])))
if cmds:
    names = sorted({c["command"] for c in cmds}, key=lambda n: -sum(float(c["calls_per_msg"]) for c in cmds if c["command"] == n))
    rcfg = [c for c in configs if c != "embedded"]
    print("| Redis command: calls per delivered message (median over rounds) | " + " | ".join(rcfg) + " |")
    print("|---|" + "---|" * len(rcfg))
    for n in names:
        cells = []
        for c in rcfg:
            vals = [float(x["calls_per_msg"]) for x in cmds if x["command"] == n and x["config"] == c]
            us = [float(x["usec_per_call"]) for x in cmds if x["command"] == n and x["config"] == c]
            cells.append(f"{statistics.median(vals):.4f} ({statistics.median(us):.0f} µs/call)" if vals else "-")
        print(f"| {n} | " + " | ".join(cells) + " |")
EOF
    echo
    echo "Redis figures: INFO before bench_message starts and after it ends (logins, warmup, load, drain), ÷ the RECVs delivered in the run."
    echo "Node log lines: case-insensitive matches of error|warn|fail|conflict|drop in the nodes' logs."
} >"$out_dir/summary.md"
cat "$out_dir/summary.md"
$all_clean
