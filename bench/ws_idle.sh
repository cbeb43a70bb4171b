#!/usr/bin/env bash
# Server memory per idle v4 session, raw TCP against WebSocket, in one run:
# phases TCP, WS, TCP, WS, ... (--rounds pairs), each on a fresh server
# (release build, --mode test, the same flags for both transports: TCP on
# --port, WebSocket on --ws-port, a temp data dir, --instance unique) with N
# idle bench_connection clients (heartbeat 20 s). Per phase: the server's
# VmRSS after start (baseline), all N online, --hold seconds (at least one
# heartbeat, so every session has PINGed), VmRSS again; (growth) / N is the
# server's cost of a session. Beside it the kernel's: /proc/net/sockstat TCP
# "mem" pages x 4096 / N and /proc/meminfo Slab growth / N (host-wide: both
# ends of each loopback connection, and whatever else runs on the host).
#
#   bench/ws_idle.sh [-n 25000] [--rounds 2] [--build-dir build-bench]
#                    [--port 17700] [--ws-port 17701] [--hold 30]
#                    [--phase-timeout 180] [--tw-wait 70] [--out DIR]
#                    [--server-arg X]... [--bench-arg X]...
#
# -n            sessions per phase (default 25000)
# --rounds      TCP+WS pairs (default 2: TCP, WS, TCP, WS)
# --hold        seconds between "all online" and the second RSS reading
#               (default 30; at least the 20 s heartbeat)
# --phase-timeout  seconds for all N to come online (default 180), else the
#               phase fails (the run goes on with the next phase)
# --tw-wait     at most this many seconds after a phase for the TIME_WAIT
#               sockets of the closed connections to go (they hold kernel
#               memory the next baseline would count; default 70)
# --out         default bench/results/websocket/idle-<date>
#
# Writes into --out: per phase P (1-tcp, 2-ws, ...) P-server.log, P-bench.log,
# P-server.cmd, P-bench.cmd, P-stat.json (limaoim-stat at the end of the
# hold); phases.csv (one row per phase); summary.md (the table, medians per
# transport, the command). Exit 0 when every phase had all N online.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$script_dir")
readonly script_dir repo_dir
readonly command_line="$0 $*"

die() {
    echo "ws_idle.sh: $*" >&2
    exit 2
}
usage() {
    sed -n '2,/^set /s/^# \{0,1\}//p' "$0" >&2
    exit 2
}
positive_integer() {
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, not '$2'"
    echo "$2"
}

clients=25000
rounds=2
build_dir=""
port=17700
ws_port=""
hold=30
phase_timeout=180
tw_wait=70
out_dir=""
extra_server_args=()
extra_bench_args=()
while (($# > 0)); do
    (($# >= 2)) || usage
    case "$1" in
        -n | --clients) clients=$(positive_integer "$1" "$2") ;;
        --rounds) rounds=$(positive_integer "$1" "$2") ;;
        --build-dir) build_dir=$2 ;;
        --port) port=$(positive_integer "$1" "$2") ;;
        --ws-port) ws_port=$(positive_integer "$1" "$2") ;;
        --hold) hold=$(positive_integer "$1" "$2") ;;
        --phase-timeout) phase_timeout=$(positive_integer "$1" "$2") ;;
        --tw-wait) [[ "$2" =~ ^[0-9]+$ ]] || die "--tw-wait needs seconds"; tw_wait=$2 ;;
        --out) out_dir=$2 ;;
        --server-arg) extra_server_args+=("$2") ;;
        --bench-arg) extra_bench_args+=("$2") ;;
        *) usage ;;
    esac
    shift 2
done
: "${ws_port:=$((port + 1))}"
((port <= 65535 && ws_port <= 65535)) || die "ports must be at most 65535"
((port != ws_port)) || die "--port and --ws-port must differ"
if [[ -z "$build_dir" ]]; then
    build_dir="$repo_dir/build-bench"
    [[ -x "$build_dir/limaoim" ]] || build_dir="$repo_dir/build-release"
fi
[[ "$build_dir" == /* ]] || build_dir="$PWD/$build_dir"
readonly server_bin="$build_dir/limaoim" stat_bin="$build_dir/limaoim-stat" bench_bin="$build_dir/bench_connection"
for binary in "$server_bin" "$stat_bin" "$bench_bin"; do
    [[ -x "$binary" ]] || die "$binary is missing: ninja -C $build_dir limaoim limaoim-stat bench_connection"
done
case "$("$server_bin" --help 2>/dev/null || true)" in *--ws-addr*) ;; *) die "$server_bin has no --ws-addr" ;; esac
case "$("$bench_bin" -help 2>&1 || true)" in *"-ws "*) ;; *) die "$bench_bin has no -ws" ;; esac
buildtype=$(python3 -c 'import json, sys; print([o["value"] for o in json.load(open(sys.argv[1])) if o["name"] == "buildtype"][0])' \
    "$build_dir/meson-info/intro-buildoptions.json" 2>/dev/null || echo unknown)
[[ "$buildtype" == release ]] || echo "ws_idle.sh: warning: $build_dir is not a release build ($buildtype)" >&2

[[ -n "$out_dir" ]] || out_dir="$repo_dir/bench/results/websocket/idle-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
readonly out_dir
# As bench/online.sh: headroom over the clients.
readonly max_conns=$((clients + clients / 8 + 64))
# Source addresses: ~28000 ephemeral ports each, used up to ~20000; 8 at least.
readonly sources=$(((clients + 19999) / 20000 > 8 ? (clients + 19999) / 20000 : 8))
((sources <= 253)) || die "-n too large for 253 source addresses"
readonly srcs="127.0.0.2-127.0.0.$((sources + 1))"
readonly bench_timeout=$((phase_timeout + hold + 60))

for p in "$port" "$ws_port"; do
    if ss -Hltn "sport = :$p" | grep -q .; then die "port $p is already in use"; fi
done

server_pid=""
bench_pid=""
data_dir=""

any_alive() {
    local pid
    for pid in "$@"; do [[ -n "$pid" && -d /proc/$pid ]] && return 0; done
    return 1
}
# SIGTERM one process (by pid), wait up to the given seconds, then SIGKILL it.
stop_pid() {
    local pid=$1 seconds=$2 tick
    [[ -n "$pid" && -d /proc/$pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((tick = 0; tick < seconds * 10; tick++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    # bench_connection's workers follow their parent (PR_SET_PDEATHSIG).
    stop_pid "$bench_pid" 40
    stop_pid "$server_pid" 30
    bench_pid=""
    server_pid=""
    if [[ -n "$data_dir" ]]; then rm -rf "$data_dir"; fi
    data_dir=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ulimit -n "$(ulimit -Hn)"
ulimit -l "$(ulimit -Hl)" 2>/dev/null || true

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
tcp_mem_pages() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
tcp_inuse() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "inuse") print $(i + 1) }' /proc/net/sockstat; }
tcp_tw() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat; }
slab_kib() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }
# The latest per-second online count of bench_connection's log.
bench_online() {
    { grep -o '^t=[0-9]*s online=[0-9]*' "$1" || true; } | tail -1 | sed 's/.*online=//'
}

# Waits until the TIME_WAIT sockets of earlier phases are gone (or tw_wait).
wait_time_wait() {
    local waited
    for ((waited = 0; waited < tw_wait; waited++)); do
        (($(tcp_tw) < 500)) && return 0
        sleep 1
    done
}

echo "phase,transport,round,online,ramp_s,rss_before_kib,rss_after_kib,rss_peak_kib,rss_per_session_b,tcp_mem_before_pages,tcp_mem_after_pages,tcp_mem_per_session_b,slab_before_kib,slab_after_kib,slab_per_session_b,tcp_inuse_before,tcp_tw_before,bench_rss_mib,status" \
    >"$out_dir/phases.csv"

failed_phases=0
# run_phase INDEX TRANSPORT ROUND
run_phase() {
    local index=$1 transport=$2 round=$3 name="$1-$2"
    local target_port=$port
    local -a bench_transport=()
    if [[ "$transport" == ws ]]; then
        target_port=$ws_port
        bench_transport=(-ws)
    fi
    wait_time_wait
    data_dir=$(mktemp -d /tmp/limaoim-ws-idle-XXXXXX)
    local instance="ws-idle-$$-$name"
    local -a server_args=(--mode test --addr 127.0.0.1 --port "$port" --ws-addr "127.0.0.1:$ws_port" --http-addr ''
        --max-conns "$max_conns" --data-dir "$data_dir" --instance "$instance")
    ((${#extra_server_args[@]})) && server_args+=("${extra_server_args[@]}")
    echo "$server_bin ${server_args[*]}" >"$out_dir/$name-server.cmd"
    "$server_bin" "${server_args[@]}" >"$out_dir/$name-server.log" 2>&1 &
    server_pid=$!
    local waited
    for ((waited = 0; waited < 300; waited++)); do
        [[ -d /proc/$server_pid ]] || die "the server exited at start: see $out_dir/$name-server.log"
        if ss -Hltn "sport = :$port" | grep -q . && ss -Hltn "sport = :$ws_port" | grep -q .; then break; fi
        sleep 0.1
    done
    ((waited < 300)) || die "the server did not listen on $port and $ws_port within 30 s"
    sleep 2  # the workers' buffers are populated at start; let it settle
    local rss_before tcp_before slab_before inuse_before tw_before
    rss_before=$(rss_kib "$server_pid")
    tcp_before=$(tcp_mem_pages)
    slab_before=$(slab_kib)
    inuse_before=$(tcp_inuse)
    tw_before=$(tcp_tw)

    local -a bench_args=(-cids "1-$clients" -hostname 127.0.0.1 -port "$target_port" "${bench_transport[@]}"
        -heartbeat 20s -timeout "${bench_timeout}s" -srcs "$srcs")
    ((${#extra_bench_args[@]})) && bench_args+=("${extra_bench_args[@]}")
    echo "$bench_bin ${bench_args[*]}" >"$out_dir/$name-bench.cmd"
    "$bench_bin" "${bench_args[@]}" >"$out_dir/$name-bench.log" 2>&1 &
    bench_pid=$!
    local started=$SECONDS online=0 status=ok
    while ((SECONDS - started < phase_timeout)); do
        sleep 1
        online=$(bench_online "$out_dir/$name-bench.log")
        [[ -n "$online" ]] || online=0
        ((online >= clients)) && break
        any_alive "$bench_pid" || break
    done
    local ramp_s=$((SECONDS - started))
    if ((online < clients)); then
        status="only $online of $clients online after ${ramp_s}s"
        failed_phases=$((failed_phases + 1))
    fi
    # Hold: every client PINGs at least once; the peak RSS is kept.
    local rss_peak=0 rss tick
    for ((tick = 0; tick < hold; tick++)); do
        rss=$(rss_kib "$server_pid")
        ((rss > rss_peak)) && rss_peak=$rss
        sleep 1
    done
    local rss_after tcp_after slab_after online_after
    rss_after=$(rss_kib "$server_pid")
    ((rss_after > rss_peak)) && rss_peak=$rss_after
    tcp_after=$(tcp_mem_pages)
    slab_after=$(slab_kib)
    online_after=$(bench_online "$out_dir/$name-bench.log")
    [[ -n "$online_after" ]] || online_after=0
    "$stat_bin" --instance "$instance" --json >"$out_dir/$name-stat.json" 2>&1 || true
    if [[ "$status" == ok ]] && ((online_after < clients)); then
        status="$online_after of $clients online at the end of the hold"
        failed_phases=$((failed_phases + 1))
    fi
    stop_pid "$bench_pid" 40
    bench_pid=""
    stop_pid "$server_pid" 30
    server_pid=""
    rm -rf "$data_dir"
    data_dir=""
    # The ramp as bench_connection measured it (from its clock's start).
    local ramp bench_rss
    ramp=$(sed -n 's/^  ramp: all [0-9]* clients online after \([0-9.]*\)s.*/\1/p' "$out_dir/$name-bench.log" | head -1)
    [[ -n "$ramp" ]] || ramp=$ramp_s
    bench_rss=$(sed -n 's/.*largest worker RSS \([0-9.]*\) MiB.*/\1/p' "$out_dir/$name-bench.log" | head -1)
    awk -v OFS=, -v phase="$index" -v transport="$transport" -v round="$round" -v online="$online_after" -v ramp="$ramp" \
        -v rb="$rss_before" -v ra="$rss_after" -v rp="$rss_peak" -v tb="$tcp_before" -v ta="$tcp_after" \
        -v sb="$slab_before" -v sa="$slab_after" -v n="$clients" -v inuse="$inuse_before" -v tw="$tw_before" \
        -v bench_rss="${bench_rss:--}" -v status="$status" 'BEGIN {
            print phase, transport, round, online, ramp, rb, ra, rp, sprintf("%.0f", (ra - rb) * 1024 / n), tb, ta,
                sprintf("%.0f", (ta - tb) * 4096 / n), sb, sa, sprintf("%.0f", (sa - sb) * 1024 / n), inuse, tw, bench_rss,
                "\"" status "\""
        }' >>"$out_dir/phases.csv"
    echo "phase $name: $(tail -1 "$out_dir/phases.csv")" >&2
}

started_at=$(date -Is)
phase=0
for ((round = 1; round <= rounds; round++)); do
    for transport in tcp ws; do
        phase=$((phase + 1))
        run_phase "$phase" "$transport" "$round"
    done
done

# summary.md: the phases and the medians per transport.
{
    echo "# Idle sessions: raw TCP vs WebSocket, $clients v4 sessions per phase"
    echo
    echo "date: $started_at; host: Linux $(uname -r), $(nproc) CPUs, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
    echo
    echo "command: \`$command_line\`"
    echo
    echo "server (per phase, instance and data dir differ): \`$(cat "$out_dir/1-tcp-server.cmd")\`"
    echo
    echo "load (TCP): \`$(cat "$out_dir/1-tcp-bench.cmd")\`; WebSocket: the same with \`-port $ws_port -ws\`"
    echo
    echo "| phase | transport | online | ramp s | server RSS before → after (MiB) | **server RSS / session** | kernel TCP mem / session | Slab / session | TCP sockets in use / TIME_WAIT before | bench worker RSS max (MiB) | status |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F, 'NR > 1 { gsub(/"/, "", $19)
        printf "| %s | %s | %s | %s | %.1f → %.1f | **%s B** | %s B | %s B | %s / %s | %s | %s |\n",
            $1, $2 == "ws" ? "WebSocket" : "TCP", $4, $5, $6 / 1024, $7 / 1024, $9, $12, $15, $16, $17, $18, $19 }' \
        "$out_dir/phases.csv"
    echo
    awk -F, '
        function median(list, count,    sorted, i, j, swap) {
            if (count == 0) return "-"
            for (i = 1; i <= count; i++) sorted[i] = list[i]
            for (i = 2; i <= count; i++)
                for (j = i; j > 1 && sorted[j - 1] > sorted[j]; j--) { swap = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = swap }
            return count % 2 ? sorted[(count + 1) / 2] : (sorted[count / 2] + sorted[count / 2 + 1]) / 2
        }
        NR > 1 && $19 == "\"ok\"" {
            t = $2; n[t]++
            rss[t, n[t]] = $9; tcp[t, n[t]] = $12; slab[t, n[t]] = $15
            per_round[t] = per_round[t] (per_round[t] == "" ? "" : ", ") $9
        }
        END {
            print "| medians over the phases with all sessions online | server RSS / session (per round) | kernel TCP mem / session | Slab / session |"
            print "|---|---|---|---|"
            for (k = 1; k <= 2; k++) {
                t = k == 1 ? "tcp" : "ws"
                delete a; delete b; delete c
                for (i = 1; i <= n[t]; i++) { a[i] = rss[t, i]; b[i] = tcp[t, i]; c[i] = slab[t, i] }
                m_rss[t] = median(a, n[t]); m_tcp[t] = median(b, n[t]); m_slab[t] = median(c, n[t])
                printf "| %s (%d phases) | **%s B** (%s) | %s B | %s B |\n", k == 1 ? "TCP" : "WebSocket", n[t], m_rss[t],
                    per_round[t], m_tcp[t], m_slab[t]
            }
            if (n["tcp"] && n["ws"])
                printf "| **WebSocket − TCP** | **%+d B** (target ≤ +64 B) | %+d B | %+d B |\n", m_rss["ws"] - m_rss["tcp"],
                    m_tcp["ws"] - m_tcp["tcp"], m_slab["ws"] - m_slab["tcp"]
        }' "$out_dir/phases.csv"
    echo
    echo "Server RSS / session: (VmRSS after the hold − VmRSS 2 s after the server started) / sessions;" \
        "the hold is ${hold} s after all sessions came online (heartbeat 20 s: every session PINGed)."
    echo "Kernel TCP mem (/proc/net/sockstat \"mem\" pages × 4096) and Slab (/proc/meminfo) are host-wide:" \
        "both ends of each loopback connection, and anything else running on the host."
} >"$out_dir/summary.md"
cat "$out_dir/summary.md"
echo "outputs in $out_dir" >&2
((failed_phases == 0))
