#!/usr/bin/env bash
# The seed's connection load test on one host, over loopback: one limaoim
# server and N bench_connection processes standing in for the N load
# machines (cids 1-25000, 25001-50000, ...), all clients held online for
# --hold after the ramp, with the server and the kernel sampled once a second.
#
#   bench/online.sh [--hold 10m] [--clients-per-machine 25000] [--machines 5]
#                   [--build-dir DIR] [--port 6666] [--out DIR] [--rate N]
#                   [--version 4] [--workers N] [--ramp-allowance 120s]
#                   [--server-arg FLAG]... [--bench-arg FLAG]... [--netns]
#
#   bench/online.sh --bench-arg -client-keys --bench-arg 64   # see bench/README.md
#   bench/online.sh --netns --hold 10m          # 1 server + 5 load namespaces (root)
#
# --build-dir  default: build-release if it exists, else build
# --hold       how long all clients stay online after the ramp allowance
#              (s/m/h, combinable: 30s, 10m, 1h30m)
# --rate       new connections per second of each bench_connection
# --ramp-allowance  time the clients get to come online before the hold
#              (default 120s, or twice the time --rate needs plus 30s)
# --out        default: bench/results/online-<date>
# --server-arg one more argument for limaoim, repeatable
#              (e.g. --server-arg --recv-mode --server-arg poll)
# --bench-arg  one more argument for every bench_connection, repeatable
#              (e.g. --bench-arg -client-keys --bench-arg 64)
# --netns      as the seed's 1 server + N load machines: the server in a
#              network namespace of its own (listening on 0.0.0.0), load
#              process k in its own namespace joined to the server's by a
#              veth pair, 10.201.k.1/24 on the server side and
#              10.201.k.2-10.201.k.9/24 (its 8 source addresses) on the load
#              side. Per-namespace sysctls start from the kernel's defaults,
#              so each namespace gets what the run needs (tools/tune's
#              recommended values; see netns-sysctl.txt). Needs root; the
#              namespaces are named lmo-PORT-srv and lmo-PORT-mK and are all
#              removed on exit (with their veths); leftovers of an earlier
#              run on the same port are removed first when no process is in
#              them, else the script refuses to start.
#
# Writes samples.csv, summary.txt, online.png, server.log, and per machine k
# bench-k.log and bench-k.csv into the output directory. Exits 0 when every
# client came online and stayed online and the server stopped cleanly; 1
# otherwise; 2 for a usage or setup error; 77 (skipped) with --netns when not
# run as root.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$script_dir")
readonly script_dir repo_dir
readonly command_line="$0 $*"
readonly baseline_seconds=5
readonly listen_wait_seconds=30
readonly server_stop_wait_seconds=30
# bench_connection gives its workers 30 s to close their sockets after -timeout.
readonly bench_stop_grace_seconds=60

die() {
    echo "online.sh: $*" >&2
    exit 2
}

usage() {
    sed -n '2,/^set /s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

# "1h30m", "10m", "45s", "90" (seconds) -> seconds.
duration_seconds() {
    local text=$1 total=0
    [[ "$text" =~ ^[0-9]+$ ]] && { echo "$text"; return; }
    [[ "$text" =~ ^([0-9]+[hms])+$ ]] || die "bad duration '$text' (use e.g. 30s, 10m, 1h30m)"
    while [[ "$text" =~ ^([0-9]+)([hms])(.*)$ ]]; do
        case "${BASH_REMATCH[2]}" in
            h) total=$((total + BASH_REMATCH[1] * 3600)) ;;
            m) total=$((total + BASH_REMATCH[1] * 60)) ;;
            s) total=$((total + BASH_REMATCH[1])) ;;
        esac
        text=${BASH_REMATCH[3]}
    done
    echo "$total"
}

positive_integer() {
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, not '$2'"
    echo "$2"
}

build_dir=""
hold_seconds=600
clients_per_machine=25000
machines=5
port=6666
out_dir=""
rate=""
protocol_version=4
workers=""
ramp_allowance_seconds=""
extra_server_args=()
extra_bench_args=()
netns=false

while (($# > 0)); do
    if [[ "$1" == --netns ]]; then
        netns=true
        shift
        continue
    fi
    (($# >= 2)) || usage
    case "$1" in
        --build-dir) build_dir="$2" ;;
        --hold) hold_seconds=$(duration_seconds "$2") ;;
        --clients-per-machine) clients_per_machine=$(positive_integer "$1" "$2") ;;
        --machines) machines=$(positive_integer "$1" "$2") ;;
        --port) port=$(positive_integer "$1" "$2") ;;
        --out) out_dir="$2" ;;
        --rate) rate=$(positive_integer "$1" "$2") ;;
        --version) protocol_version=$(positive_integer "$1" "$2") ;;
        --workers) workers=$(positive_integer "$1" "$2") ;;
        --ramp-allowance) ramp_allowance_seconds=$(duration_seconds "$2") ;;
        --server-arg) extra_server_args+=("$2") ;;
        --bench-arg) extra_bench_args+=("$2") ;;
        *) usage ;;
    esac
    shift 2
done

((machines <= 250)) || die "--machines: at most 250 (machine k uses source addresses 127.0.k.2-127.0.k.9 or 10.201.k.2-10.201.k.9)"
((port <= 65535)) || die "--port: at most 65535"
if $netns && ((EUID != 0)); then
    echo "online.sh: --netns needs root (ip netns); skipped" >&2
    exit 77
fi
if [[ -z "$build_dir" ]]; then
    build_dir="$repo_dir/build"
    [[ -d "$repo_dir/build-release" ]] && build_dir="$repo_dir/build-release"
fi
[[ "$build_dir" == /* ]] || build_dir="$PWD/$build_dir"
readonly server_bin="$build_dir/limaoim" stat_bin="$build_dir/limaoim-stat" bench_bin="$build_dir/bench_connection"
for binary in "$server_bin" "$stat_bin" "$bench_bin"; do
    [[ -x "$binary" ]] || die "$binary is missing: ninja -C $build_dir limaoim limaoim-stat bench_connection"
done
if [[ -z "$ramp_allowance_seconds" ]]; then
    ramp_allowance_seconds=120
    [[ -n "$rate" ]] && ramp_allowance_seconds=$((2 * (clients_per_machine + rate - 1) / rate + 30))
fi
readonly total_clients=$((clients_per_machine * machines))
# Headroom over the clients, as the seed's 140000 for 125000.
readonly max_conns=$((total_clients + total_clients / 8 + 64))
readonly bench_timeout_seconds=$((ramp_allowance_seconds + hold_seconds))
[[ -n "$out_dir" ]] || out_dir="$repo_dir/bench/results/online-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)

# The server's namespace is new with --netns, so only loopback runs can
# collide on the port; the stats segment (/dev/shm, not namespaced) is
# checked by the server itself.
if ! $netns && ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use"; fi

# --netns: names, addresses and the per-namespace kernel settings.
readonly ns_prefix="lmo-$port"
readonly server_ns="$ns_prefix-srv"
load_ns() { echo "$ns_prefix-m$1"; }
created_namespaces=()
created_veths=()  # server-side ends, in $server_ns; deleting one deletes its pair

# Runs a command in the server's namespace (or here, without --netns). Not
# for background jobs: a function in the background is a subshell, whose pid
# is not the command's.
in_server_ns() {
    if $netns; then ip netns exec "$server_ns" "$@"; else "$@"; fi
}

# The run's namespaces all begin with lmo-PORT-. One that is left from an
# earlier run (killed with SIGKILL, say) is removed when no process is in it;
# one that has processes belongs to a run still going, and this run stops.
clear_leftover_namespaces() {
    local name _ pids
    while read -r name _; do
        [[ "$name" == "$ns_prefix"-* ]] || continue
        pids=$(ip netns pids "$name" 2>/dev/null | paste -sd ' ')
        [[ -z "$pids" ]] || die "namespace $name holds processes $pids: is another online.sh --netns --port $port running?"
        echo "online.sh: removing namespace $name left by an earlier run (with its veths)" >&2
        ip netns delete "$name"
    done < <(ip netns list)
}

# Sets a sysctl in a namespace and records it in netns-sysctl.txt.
ns_sysctl() {
    local namespace=$1 key=$2 value=$3
    ip netns exec "$namespace" sysctl -qw "$key=$value" || die "cannot set $key=$value in namespace $namespace"
    printf '%s %s = %s\n' "$namespace" "$key" "$(ip netns exec "$namespace" sysctl -n "$key" | tr '\t' ' ')" \
        >>"$out_dir/netns-sysctl.txt"
}

# The larger of the root namespace's value (what a loopback run gets) and
# tools/tune's recommended minimum.
at_least() {
    local key=$1 minimum=$2 current
    current=$(sysctl -n "$key")
    echo $((current > minimum ? current : minimum))
}

# What a loopback run gets from the root namespace and relies on, and what
# tools/tune recommends for the server and for the load machines. New
# namespaces start from the kernel's defaults for these (recent kernels copy
# tcp_rmem/tcp_wmem from the root namespace, older ones do not).
tune_namespace() {
    local namespace=$1 role=$2 key
    for key in net.ipv4.tcp_rmem net.ipv4.tcp_wmem net.ipv4.tcp_syncookies; do
        ns_sysctl "$namespace" "$key" "$(sysctl -n "$key" | tr '\t' ' ')"
    done
    ns_sysctl "$namespace" net.ipv4.tcp_timestamps 1
    ns_sysctl "$namespace" net.ipv4.tcp_tw_reuse 1
    if [[ "$role" == server ]]; then
        # Each bench worker keeps up to 512 handshakes in flight: 5 x 2 x 512
        # for the seed's run, above the default backlog of 4096.
        ns_sysctl "$namespace" net.core.somaxconn "$(at_least net.core.somaxconn 65535)"
        ns_sysctl "$namespace" net.ipv4.tcp_max_syn_backlog "$(at_least net.ipv4.tcp_max_syn_backlog 65535)"
    else
        ns_sysctl "$namespace" net.ipv4.ip_local_port_range "1024 65535"
    fi
}

# Server namespace with lo, then per load process k a namespace and a veth
# pair: lmo-mK (10.201.k.1/24) in the server's namespace, lmo-srv
# (10.201.k.2-10.201.k.9/24) in the load namespace. Every name is recorded
# before the next step, so that teardown_netns removes whatever was made.
setup_netns() {
    local k host namespace
    clear_leftover_namespaces
    : >"$out_dir/netns-sysctl.txt"
    ip netns add "$server_ns"
    created_namespaces+=("$server_ns")
    ip -n "$server_ns" link set lo up
    tune_namespace "$server_ns" server
    for ((k = 1; k <= machines; k++)); do
        namespace=$(load_ns "$k")
        ip netns add "$namespace"
        created_namespaces+=("$namespace")
        ip link add "lmo-m$k" netns "$server_ns" type veth peer name lmo-srv netns "$namespace"
        created_veths+=("lmo-m$k")
        ip -n "$server_ns" addr add "10.201.$k.1/24" dev "lmo-m$k"
        ip -n "$server_ns" link set "lmo-m$k" up
        ip -n "$namespace" link set lo up
        for ((host = 2; host <= 9; host++)); do ip -n "$namespace" addr add "10.201.$k.$host/24" dev lmo-srv; done
        ip -n "$namespace" link set lmo-srv up
        tune_namespace "$namespace" load
    done
}

# "key=value, ..." as set in one namespace, from netns-sysctl.txt.
namespace_sysctls() {
    awk -v namespace="$1" '$1 == namespace { key = $2; sub(/^[^ ]+ [^ ]+ = /, ""); printf "%s%s=%s", separator, key, $0
        separator = ", " } END { print "" }' "$out_dir/netns-sysctl.txt"
}

# Removes every veth and namespace setup_netns made; says so if one remains.
teardown_netns() {
    local veth name
    local -a left=()
    for veth in "${created_veths[@]}"; do ip -n "$server_ns" link delete "$veth" 2>/dev/null || true; done
    for name in "${created_namespaces[@]}"; do
        ip netns delete "$name" 2>/dev/null || true
        if [[ -e /run/netns/$name ]]; then left+=("$name"); fi
    done
    created_veths=()
    created_namespaces=()
    ((${#left[@]} == 0)) || echo "online.sh: could not remove namespaces ${left[*]}: ip netns delete them" >&2
}

server_pid=""
sampler_pid=""
bench_pids=()

descendants_and_self() {
    local child
    echo "$1"
    # shellcheck disable=SC2013 # the children files hold space-separated pids
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do descendants_and_self "$child"; done
}

any_alive() {
    local pid
    for pid in "$@"; do [[ -d /proc/$pid ]] && return 0; done
    return 1
}

# Sends SIGTERM to the given processes, waits up to the given seconds, then
# SIGKILLs what is left of them and their descendants.
terminate() {
    local seconds=$1 pid tick
    shift
    local -a tree=()
    for pid in "$@"; do mapfile -t -O "${#tree[@]}" tree < <(descendants_and_self "$pid"); done
    ((${#tree[@]} > 0)) || return 0
    kill -TERM "$@" 2>/dev/null || true
    for ((tick = 0; tick < seconds * 10; tick++)); do
        any_alive "${tree[@]}" || break
        sleep 0.1
    done
    for pid in "${tree[@]}"; do
        if [[ -d /proc/$pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
}

# bench_connection stops its workers within 30 s of a SIGTERM.
cleanup() {
    local -a started=()
    local pid
    for pid in "${bench_pids[@]}" "$sampler_pid" "$server_pid"; do
        if [[ -n "$pid" && -d /proc/$pid ]]; then started+=("$pid"); fi
    done
    ((${#started[@]} == 0)) || terminate 35 "${started[@]}"
    wait 2>/dev/null || true
    teardown_netns
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The server raises its own soft limit; the bench processes and the
# io_uring rings (RLIMIT_MEMLOCK on older kernels) inherit these.
ulimit -n "$(ulimit -Hn)"
ulimit -l "$(ulimit -Hl)"

start_server() {
    local address=127.0.0.1
    local -a prefix=()
    if $netns; then
        address=0.0.0.0
        prefix=(ip netns exec "$server_ns")
    fi
    local -a arguments=(--mode test --addr "$address" --port "$port" --max-conns "$max_conns")
    [[ -n "$workers" ]] && arguments+=(--workers "$workers")
    ((${#extra_server_args[@]})) && arguments+=("${extra_server_args[@]}")
    echo "${prefix[*]}${prefix[*]:+ }$server_bin ${arguments[*]}" >"$out_dir/server.cmd"
    # ip netns exec execs the command: $! is the server's pid.
    "${prefix[@]}" "$server_bin" "${arguments[@]}" >"$out_dir/server.log" 2>&1 &
    server_pid=$!
    local waited
    for ((waited = 0; waited < listen_wait_seconds * 10; waited++)); do
        [[ -d /proc/$server_pid ]] || die "the server exited at start: see $out_dir/server.log"
        in_server_ns ss -Hltn "sport = :$port" | grep -q . && return
        sleep 0.1
    done
    die "the server did not listen on port $port within ${listen_wait_seconds}s"
}

# Machine k (1-based) gets the seed's k-th cid range and its own source
# addresses: 127.0.k.2-127.0.k.9 on loopback, or with --netns its own
# namespace with 10.201.k.2-10.201.k.9 and the server at 10.201.k.1.
start_machine() {
    local k=$1
    local first=$(((k - 1) * clients_per_machine + 1)) server=127.0.0.1 sources="127.0.$k.2-127.0.$k.9"
    local -a prefix=()
    if $netns; then
        server="10.201.$k.1"
        sources="10.201.$k.2-10.201.$k.9"
        prefix=(ip netns exec "$(load_ns "$k")")
    fi
    local -a arguments=(-cids "$first-$((first + clients_per_machine - 1))" -hostname "$server" -port "$port"
        -timeout "${bench_timeout_seconds}s" -srcs "$sources" -heartbeat 20s
        -version "$protocol_version" -report "$out_dir/bench-$k.csv")
    [[ -n "$rate" ]] && arguments+=(-rate "$rate")
    ((${#extra_bench_args[@]})) && arguments+=("${extra_bench_args[@]}")
    echo "${prefix[*]}${prefix[*]:+ }$bench_bin ${arguments[*]}" >>"$out_dir/bench.cmd"
    "${prefix[@]}" "$bench_bin" "${arguments[@]}" >"$out_dir/bench-$k.log" 2>&1 &
    bench_pids+=($!)
    echo $! >>"$out_dir/bench.pids"
}

# Waits for the bench processes, which stop by themselves at -timeout; one
# still running well after that is killed. Sets bench_statuses.
wait_for_machines() {
    local give_up=$((SECONDS + bench_timeout_seconds + bench_stop_grace_seconds)) pid status
    while any_alive "${bench_pids[@]}" && ((SECONDS < give_up)); do sleep 1; done
    any_alive "${bench_pids[@]}" && terminate 35 "${bench_pids[@]}"
    bench_statuses=()
    for pid in "${bench_pids[@]}"; do
        status=0
        wait "$pid" || status=$?
        bench_statuses+=("$status")
    done
    bench_pids=()
}

# Sets server_status to the server's exit status after a SIGTERM.
stop_server() {
    terminate "$server_stop_wait_seconds" "$server_pid"
    server_status=0
    wait "$server_pid" || server_status=$?
    # 137: SIGKILL, which only terminate's deadline sends.
    ((server_status != 137)) || server_status="137: killed, still running ${server_stop_wait_seconds}s after SIGTERM"
    server_pid=""
}

stop_sampler() {
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=""
}

sleep_until_us() {
    local wait_us=$(($1 - ${EPOCHREALTIME/./}))
    if ((wait_us > 0)); then sleep "$((wait_us / 1000000)).$(printf '%06d' $((wait_us % 1000000)))"; fi
}

# Prints one statistic (min, max, median or last) of a samples.csv column
# over the rows with from <= t_s <= to; "-" if there is none.
column_stat() {
    local column=$1 from=$2 to=$3 statistic=$4
    awk -F, -v column="$column" -v from="$from" -v to="$to" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == column) index_of = i; next }
        index_of && $1 + 0 >= from && $1 + 0 <= to && $index_of != "" { print $index_of }
    ' "$out_dir/samples.csv" |
        { if [[ "$statistic" == last ]]; then cat; else sort -g; fi; } |
        awk -v statistic="$statistic" '
            { values[NR] = $1 }
            END {
                if (NR == 0) { print "-"; exit }
                if (statistic == "min") print values[1]
                else if (statistic == "max" || statistic == "last") print values[NR]
                else print (NR % 2 ? values[(NR + 1) / 2] : (values[NR / 2] + values[NR / 2 + 1]) / 2)
            }'
}

# First t_s at which every client was online, or "-".
all_online_at() {
    awk -F, -v clients="$total_clients" 'NR > 1 && $1 + 0 >= 0 && $2 + 0 >= clients { print $1; found = 1; exit }
        END { if (!found) print "-" }' "$out_dir/samples.csv"
}

# Sum of one "key=N" field of the bench_connection "end:" summary lines.
bench_total() {
    awk -v key="$1" '/^  end:/ { for (i = 2; i <= NF; i++) if (index($i, key "=") == 1) sum += substr($i, length(key) + 2) }
        END { print sum + 0 }' "$out_dir"/bench-*.log
}

# Load processes that ended without a summary (a usage error, a crash).
machines_without_summary() {
    awk 'FNR == 1 { files++ } /^  end:/ { ended++ } END { print files - ended }' "$out_dir"/bench-*.log
}

# "a / b" with the given number of decimals, or "-" if either is not a number.
ratio() {
    awk -v a="$1" -v b="$2" -v decimals="$3" 'BEGIN {
        if (a !~ /^-?[0-9.]+$/ || b !~ /^-?[0-9.]+$/ || b == 0) { print "-"; exit }
        printf "%.*f\n", decimals, a / b }'
}

mib() { ratio "$1" 1024 1; }

# Kernel-wide numbers (sockstat, Slab, host CPU) include whatever else runs
# on the host: says so when the baseline shows other work.
host_contention_warning() {
    local other_sockets other_cpu
    other_sockets=$(column_stat tcp_inuse -999 -0.5 median)
    # The samples count the server's namespace only; other work is in the root one.
    if $netns; then other_sockets=$root_tcp_inuse_before; fi
    other_cpu=$(column_stat host_cpu_pct -999 -0.5 median)
    if awk -v sockets="$other_sockets" -v cpu="$other_cpu" 'BEGIN { exit !(sockets > 100 || cpu > 20) }'; then
        echo "WARNING:  the host was not idle before the load (median $other_cpu% CPU of $(nproc)00%," \
            "$other_sockets TCP sockets in use): the kernel and host CPU figures include other work"
    fi
}

# The server's own view at the end of the load: handshake latency and why
# connections were closed.
server_final_counters() {
    jq -r 'def us: if . == null then "-" else (floor | tostring) + " us" end;
        .handshake_latency_us as $latency
        | "handshake latency (CONNECT received to CONNACK queued) p50 \($latency.p50 | us), p90 \($latency.p90 | us),"
          + " p99 \($latency.p99 | us); accepted \(.counters.accepted), auth ok \(.counters.auth_ok); closed: "
          + ([.counters.closed | to_entries[] | select(.value > 0) | "\(.key) \(.value)"] | join(", ")
             | if . == "" then "none" else . end)' \
        "$out_dir/server-stat-final.json" 2>/dev/null || echo "(no final limaoim-stat snapshot)"
}

# The kernel's SNMP counters ("name value" lines), which are per network
# namespace: with --netns summed over the server's and the load namespaces.
network_counters() {
    if ! $netns; then
        nstat -asz
        return
    fi
    local k
    {
        ip netns exec "$server_ns" nstat -asz
        for ((k = 1; k <= machines; k++)); do ip netns exec "$(load_ns "$k")" nstat -asz; done
    } | awk '!/^#/ { sum[$1] += $2 } END { for (name in sum) print name, sum[name] }' | sort
}

# TCP counters that explain slow or failed connects, as "name +delta" over
# the load processes' run.
tcp_trouble_counters() {
    awk 'FNR == NR { before[$1] = $2; next }
         $1 ~ /^(TcpExtListenOverflows|TcpExtListenDrops|TcpExtTCPReqQFullDrop|TcpExtSyncookiesSent|TcpExtTCPSynRetrans|TcpRetransSegs|TcpEstabResets|TcpAttemptFails)$/ {
             printf "%s%s +%d", separator, substr($1, 1 + ($1 ~ /^TcpExt/ ? 6 : 3)), $2 - before[$1]; separator = ", " }
         END { print "" }' "$out_dir/nstat-before.txt" "$out_dir/nstat-after.txt"
}

write_summary() {
    local ramp_end hold_to=$((bench_timeout_seconds - 1)) end=$bench_timeout_seconds
    ramp_end=$(all_online_at)
    local hold_from=$((ramp_allowance_seconds + 1)) ramp_to=$end
    if [[ "$ramp_end" != - ]]; then
        hold_from=$(awk -v t="$ramp_end" 'BEGIN { print int(t) + 2 }')
        ramp_to=$ramp_end
    fi
    local rss_base rss_peak tcp_base tcp_peak slab_base slab_peak inuse_peak
    rss_base=$(column_stat server_rss_kib -999 -0.5 last)
    rss_peak=$(column_stat server_rss_kib 0 "$end" max)
    tcp_base=$(column_stat tcp_mem_pages -999 -0.5 last)
    tcp_peak=$(column_stat tcp_mem_pages 0 "$end" max)
    slab_base=$(column_stat slab_kib -999 -0.5 last)
    slab_peak=$(column_stat slab_kib 0 "$end" max)
    inuse_peak=$(column_stat tcp_inuse 0 "$end" max)
    local never_online failed closed dropped
    never_online=$(($(bench_total never_online) + $(machines_without_summary) * clients_per_machine))
    failed=$(bench_total failed)
    closed=$(bench_total closed_by_peer)
    dropped=$(bench_total dropped)

    local network="loopback" per_machine="cids and -srcs 127.0.k.2-127.0.k.9 per process k"
    local counters_scope="host-wide" both_ends="both ends of its loopback connection" inuse_scope="host-wide"
    if $netns; then
        network="network namespaces (1 server + $machines load, veth)"
        per_machine="cids, -hostname 10.201.k.1 and -srcs 10.201.k.2-10.201.k.9 per process k, in namespace $ns_prefix-mk"
        counters_scope="server and load namespaces summed"
        both_ends="both ends of its veth connection: the kernel counts TCP memory for all namespaces together"
        inuse_scope="in the server's namespace"
    fi
    echo "limaoim online test: $machines load processes x $clients_per_machine clients = $total_clients, $network"
    echo "date:     $started_at"
    echo "command:  $command_line"
    echo "server:   $(cat "$out_dir/server.cmd")"
    echo "          $(grep -m1 -i 'capacity' "$out_dir/server.log" || echo '(no capacity line in server.log)')"
    echo "load:     $(head -1 "$out_dir/bench.cmd") ($per_machine)"
    if $netns; then
        echo "network:  server in namespace $server_ns on 0.0.0.0; per process k a veth pair, lmo-mk 10.201.k.1/24" \
            "<-> lmo-srv 10.201.k.2-10.201.k.9/24 in namespace $ns_prefix-mk"
        echo "sysctls:  server namespace: $(namespace_sysctls "$server_ns")"
        echo "          each load namespace: $(namespace_sysctls "$(load_ns 1)")"
    fi
    echo "host:     Linux $(uname -r), $(nproc) CPUs, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
    echo "timing:   ramp allowance ${ramp_allowance_seconds}s + hold ${hold_seconds}s = -timeout ${bench_timeout_seconds}s"
    echo
    echo "online:   peak $(column_stat online 0 "$end" max) of $total_clients; all online at t=${ramp_end}s" \
        "(sampled each second from the start of the load processes)"
    echo "          steady state measured over t=${hold_from}..${hold_to}s;" \
        "online at its end: $(column_stat online "$hold_from" "$hold_to" last)"
    { grep -h '^  ramp:' "$out_dir"/bench-*.log || true; } | sed 's/^  ramp:/ramp:    /' | sort | uniq -c |
        sed 's/^ *\([0-9]*\) /          \1 x /'
    echo "clients:  never online $never_online, failed $failed, closed by server $closed, dropped $dropped;" \
        "bench exit statuses: ${bench_statuses[*]}"
    if (($(machines_without_summary) > 0)); then
        echo "WARNING:  $(machines_without_summary) load processes ended without a summary (their clients count as never" \
            "online): see bench-k.log"
    fi
    echo "server:   exit status after SIGTERM: $server_status"
    host_contention_warning
    echo "          $(server_final_counters)"
    echo "kernel:   $(tcp_trouble_counters) ($counters_scope, during the load)"
    echo
    echo "server RSS:    baseline $(mib "$rss_base") MiB, peak $(mib "$rss_peak") MiB;" \
        "growth per client $(ratio "$((rss_peak * 1024 - rss_base * 1024))" "$total_clients" 0) bytes"
    echo "kernel TCP mem: baseline $(ratio "$((tcp_base * 4))" 1024 1) MiB, peak $(ratio "$((tcp_peak * 4))" 1024 1) MiB" \
        "($tcp_peak pages); per client $(ratio "$(((tcp_peak - tcp_base) * 4096))" "$total_clients" 0) bytes" \
        "($both_ends); TCP sockets in use at peak $inuse_peak ($inuse_scope)"
    echo "kernel Slab:   baseline $(mib "$slab_base") MiB, peak $(mib "$slab_peak") MiB;" \
        "growth per client $(ratio "$(((slab_peak - slab_base) * 1024))" "$total_clients" 0) bytes (both ends)"
    echo "server CPU:    median $(column_stat server_cpu_pct "$hold_from" "$hold_to" median)% of one core over the hold," \
        "peak $(column_stat server_cpu_pct 0 "$end" max)% (ramp included); $(nproc) cores = $(nproc)00%"
    echo "server RX:     median $(column_stat bytes_in_per_s "$hold_from" "$hold_to" median) B/s over the hold," \
        "peak $(column_stat bytes_in_per_s 0 "$end" max) B/s"
    echo "server TX:     median $(column_stat bytes_out_per_s "$hold_from" "$hold_to" median) B/s over the hold," \
        "peak $(column_stat bytes_out_per_s 0 "$end" max) B/s"
    echo "host CPU:      median $(column_stat host_cpu_pct 0 "$ramp_to" median)% over the ramp," \
        "$(column_stat host_cpu_pct "$hold_from" "$hold_to" median)% over the hold, of $(nproc)00%" \
        "(everything on the host: server, load processes, sampler and any other work)"
    echo "load RSS:      peak $(mib "$(column_stat load_rss_kib 0 "$end" max)") MiB over all load processes"
    echo
    echo "bench_connection summaries:"
    local k
    for ((k = 1; k <= machines; k++)); do
        echo "[$k] exit status ${bench_statuses[k - 1]}"
        grep -E '^(summary|  ramp|  end|  cpu|verdict):' "$out_dir/bench-$k.log" | sed 's/^/    /' || echo "    (no summary)"
    done
}

if $netns; then setup_netns; fi
start_server
echo "server pid $server_pid: $(grep -m1 -i 'capacity' "$out_dir/server.log" || true)" >&2

: >"$out_dir/bench.pids"
: >"$out_dir/bench.cmd"
readonly t0_us=$((${EPOCHREALTIME/./} + baseline_seconds * 1000000))
"$script_dir/sample.sh" --server-pid "$server_pid" --stat "$stat_bin" --instance "$port" --t0-us "$t0_us" \
    --load-pids "$out_dir/bench.pids" \
    --max-seconds $((baseline_seconds + bench_timeout_seconds + bench_stop_grace_seconds + 30)) \
    >"$out_dir/samples.csv" 2>"$out_dir/sample.log" &
sampler_pid=$!

sleep_until_us "$t0_us"
started_at=$(date -Is)
readonly started_at
network_counters >"$out_dir/nstat-before.txt"
root_tcp_inuse_before=$(awk '$1 == "TCP:" { print $3 }' /proc/net/sockstat)
readonly root_tcp_inuse_before
for ((k = 1; k <= machines; k++)); do start_machine "$k"; done
echo "$machines x $clients_per_machine clients started; ramp allowance ${ramp_allowance_seconds}s + hold ${hold_seconds}s" >&2

wait_for_machines
network_counters >"$out_dir/nstat-after.txt"
"$stat_bin" --instance "$port" --json >"$out_dir/server-stat-final.json" 2>&1 || true
# A few more samples show the server draining the closed connections.
sleep 3
stop_sampler
stop_server

write_summary >"$out_dir/summary.txt"
gnuplot -e "samples='$out_dir/samples.csv'; output='$out_dir/online.png'; clients=$total_clients" \
    "$script_dir/plot_online.gp" 2>"$out_dir/gnuplot.log" || echo "online.sh: gnuplot failed, see $out_dir/gnuplot.log" >&2
cat "$out_dir/summary.txt"
echo "outputs in $out_dir" >&2

[[ "$server_status" == 0 ]] || exit 1
for status in "${bench_statuses[@]}"; do [[ "$status" == 0 ]] || exit 1; done
