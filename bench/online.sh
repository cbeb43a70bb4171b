#!/usr/bin/env bash
# The seed's connection load test on one host, over loopback: one limaoim
# server and N bench_connection processes standing in for the N load
# machines (cids 1-25000, 25001-50000, ...), all clients held online for
# --hold after the ramp, with the server and the kernel sampled once a second.
#
#   bench/online.sh [--hold 10m] [--clients-per-machine 25000] [--machines 5]
#                   [--build-dir DIR] [--port 6666] [--out DIR] [--rate N]
#                   [--version 4] [--dialect limaoim|wukongim] [--workers N] [--ramp-allowance 120s]
#                   [--server-arg FLAG]... [--bench-arg FLAG]... [--netns]
#                   [--heartbeat 20s] [--retry-ms N] [--connect-timeout D]
#                   [--storm RATE [--storm-clients N] [--storm-delay 10s]]
#
#   bench/online.sh --bench-arg -client-keys --bench-arg 64   # see bench/README.md
#   bench/online.sh --netns --hold 10m          # 1 server + 5 load namespaces (root)
#   bench/online.sh --storm 8000 --clients-per-machine 5000 --storm-clients 20000 \
#       --rate 2000 --hold 20s                  # a login storm, see bench/README.md
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
# --heartbeat  the clients' PING interval (default 20s; 5s with --storm, so
#              that three missed PONGs show within the run)
# --dialect    the clients' protocol (bench_connection -dialect): limaoim
#              (default) or wukongim, WuKongIM's WKProto: the server's WKProto
#              listener (--wk-addr) then takes --port and its LiMaoIM listener
#              --port + 1 (idle); give --version 5 for WKProto's latest
# --retry-ms   bench_connection -retry-ms: a connect reset, refused or timed
#              out before its CONNACK is retried after a backoff
# --connect-timeout  bench_connection -connect-timeout: how long a client
#              waits for its CONNACK (default 10s; 30s with --storm, longer
#              than the server's 10 s auth timeout, so that a connection the
#              server accepted and then closed shows as a reset, not as the
#              client's own timeout)
# --storm      a login storm at RATE connections per second (over all load
#              processes): first the --machines x --clients-per-machine
#              "established" clients come online at --rate, then after
#              --storm-delay (default 10s) --storm-clients more (default 4 x
#              the established) are offered at RATE, open loop, while the
#              established clients keep their heartbeats. --hold is the time
#              after the last storm client was offered (default 60s); the
#              default --machines is 1. Also writes storm.csv (per second:
#              offered, completed handshakes, online, resets, established
#              lost, latencies, the server's accept queue) and storm.png, and
#              a "storm:" block at the top of summary.txt.
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
# client came online and stayed online and the server stopped cleanly (with
# --storm: every established client came online, no online client was lost,
# no connect was reset or refused, and the server stopped cleanly); 1
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
hold_seconds=""
clients_per_machine=25000
machines=""
port=6666
out_dir=""
rate=""
protocol_version=4
dialect=limaoim
workers=""
ramp_allowance_seconds=""
extra_server_args=()
extra_bench_args=()
netns=false
heartbeat=""
retry_ms=""
connect_timeout=""
storm_rate=""
storm_clients=""
storm_delay_seconds=10

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
        --dialect)
            [[ "$2" == limaoim || "$2" == wukongim ]] || die "--dialect is limaoim or wukongim"
            dialect=$2 ;;
        --workers) workers=$(positive_integer "$1" "$2") ;;
        --ramp-allowance) ramp_allowance_seconds=$(duration_seconds "$2") ;;
        --server-arg) extra_server_args+=("$2") ;;
        --bench-arg) extra_bench_args+=("$2") ;;
        --heartbeat) heartbeat="$(duration_seconds "$2")s" ;;
        --retry-ms) retry_ms=$(positive_integer "$1" "$2") ;;
        --connect-timeout) connect_timeout="$(duration_seconds "$2")s" ;;
        --storm) storm_rate=$(positive_integer "$1" "$2") ;;
        --storm-clients) storm_clients=$(positive_integer "$1" "$2") ;;
        --storm-delay) storm_delay_seconds=$(duration_seconds "$2") ;;
        *) usage ;;
    esac
    shift 2
done

storm=false
[[ -n "$storm_rate" ]] && storm=true
readonly storm
if ! $storm && [[ -n "$storm_clients" ]]; then die "--storm-clients needs --storm RATE"; fi
if $storm; then
    : "${machines:=1}" "${hold_seconds:=60}" "${heartbeat:=5s}" "${connect_timeout:=30s}"
else
    : "${machines:=5}" "${hold_seconds:=600}" "${heartbeat:=20s}"
fi
# The storm's clients, split over the load processes: cids after all the
# established ones, machine k taking the k-th block, at RATE / machines each.
storm_per_machine=0
storm_rate_per_machine=0
if $storm; then
    : "${storm_clients:=$((4 * clients_per_machine * machines))}"
    ((storm_clients % machines == 0)) || die "--storm-clients must be a multiple of --machines"
    storm_per_machine=$((storm_clients / machines))
    storm_rate_per_machine=$((storm_rate / machines))
    ((storm_rate_per_machine > 0)) || die "--storm: at least 1 connection per second per load process"
fi
readonly storm_per_machine storm_rate_per_machine
# Source addresses per load process: about 28000 ephemeral ports each, used
# up to ~20000, and at least the 8 of the seed's runs.
readonly sources_per_machine=$(((clients_per_machine + storm_per_machine + 19999) / 20000 > 8 ? (clients_per_machine + storm_per_machine + 19999) / 20000 : 8))
((sources_per_machine <= 253)) || die "too many clients per load process for 253 source addresses: add --machines"
readonly last_source=$((sources_per_machine + 1))

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
# Every client, the storm's included.
readonly all_clients=$((total_clients + storm_per_machine * machines))
# Headroom over the clients, as the seed's 140000 for 125000.
readonly max_conns=$((all_clients + all_clients / 8 + 64))
# With --storm the load processes stop by themselves --hold after the last
# storm client was offered (-storm-hold); -timeout bounds it: the established
# ramp's allowance, the pause, the storm at its rate, the hold and 10 s.
storm_seconds=0
if $storm; then storm_seconds=$((storm_delay_seconds + (storm_per_machine + storm_rate_per_machine - 1) / storm_rate_per_machine + 10)); fi
readonly storm_seconds
readonly bench_timeout_seconds=$((ramp_allowance_seconds + storm_seconds + hold_seconds))
[[ -n "$out_dir" ]] || out_dir="$repo_dir/bench/results/online-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)

# The server's namespace is new with --netns, so only loopback runs can
# collide on the port; the stats segment (/dev/shm, not namespaced) is
# checked by the server itself.
if ! $netns && ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use"; fi
# --dialect wukongim: the clients' port is the WKProto listener's; the LiMaoIM
# listener, which every server has, sits idle next to it.
limaoim_port=$port
if [[ "$dialect" == wukongim ]]; then
    limaoim_port=$((port + 1))
    ((limaoim_port <= 65535)) || die "--port: at most 65534 with --dialect wukongim"
    if ! $netns && ss -Hltn "sport = :$limaoim_port" | grep -q .; then die "port $limaoim_port is already in use"; fi
    case "$("$server_bin" --help 2>/dev/null || true)" in *--wk-addr*) ;; *) die "$server_bin has no --wk-addr (no WKProto listener)" ;; esac
fi
readonly limaoim_port

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
        for ((host = 2; host <= last_source; host++)); do ip -n "$namespace" addr add "10.201.$k.$host/24" dev lmo-srv; done
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
    rm -rf "$out_dir/data"  # the server's store: nothing of a connection benchmark
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
    # A connection benchmark: no HTTP API, a fresh store under the output directory.
    rm -rf "$out_dir/data"
    local -a arguments=(--mode test --addr "$address" --port "$limaoim_port" --max-conns "$max_conns"
        --http-addr '' --data-dir "$out_dir/data")
    # The stats segment keeps the name limaoim-stat and the sampler look for.
    [[ "$dialect" == wukongim ]] && arguments+=(--wk-addr "$address:$port" --instance "$port")
    # No WebSocket listener either (a server that has one listens on 2122 by default).
    case "$("$server_bin" --help 2>/dev/null || true)" in *--ws-addr*) arguments+=(--ws-addr '') ;; esac
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
    local first=$(((k - 1) * clients_per_machine + 1)) server=127.0.0.1 sources="127.0.$k.2-127.0.$k.$last_source"
    local -a prefix=()
    if $netns; then
        server="10.201.$k.1"
        sources="10.201.$k.2-10.201.$k.$last_source"
        prefix=(ip netns exec "$(load_ns "$k")")
    fi
    local -a arguments=(-cids "$first-$((first + clients_per_machine - 1))" -hostname "$server" -port "$port"
        -timeout "${bench_timeout_seconds}s" -srcs "$sources" -heartbeat "$heartbeat"
        -version "$protocol_version" -dialect "$dialect" -report "$out_dir/bench-$k.csv")
    [[ -n "$rate" ]] && arguments+=(-rate "$rate")
    [[ -n "$retry_ms" ]] && arguments+=(-retry-ms "$retry_ms")
    [[ -n "$connect_timeout" ]] && arguments+=(-connect-timeout "$connect_timeout")
    if $storm; then
        local storm_first=$((total_clients + (k - 1) * storm_per_machine + 1))
        arguments+=(-storm-cids "$storm_first-$((storm_first + storm_per_machine - 1))" -storm-rate "$storm_rate_per_machine"
            -storm-delay "${storm_delay_seconds}s" -storm-hold "${hold_seconds}s")
    fi
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
    awk -F, -v clients="$all_clients" 'NR > 1 && $1 + 0 >= 0 && $2 + 0 >= clients { print $1; found = 1; exit }
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

# storm.csv: per second (t_s = the end of the second, from the start of the
# load processes) the load processes' counters summed (percentiles: the
# largest over the load processes) and the sampler's server-side columns of
# the sample nearest to it.
write_storm_csv() {
    awk -F, -v OFS=, '
        function ms(us) { return us == "" ? "" : sprintf("%.1f", us / 1000) }
        function larger(a, b) { return a == "" ? b : (b == "" || a + 0 > b + 0 ? a : b) }
        FNR == 1 { delete col; for (i = 1; i <= NF; i++) col[$i] = i; samples = ("server_rss_kib" in col); next }
        samples {
            t = int($col["t_s"] + 0.5)
            if (t < 1) next
            server[t] = $col["accepted_per_s"] OFS $col["auth_ok_per_s"] OFS $col["server_closed_per_s"] OFS \
                $col["pending_handshakes"] OFS $col["accept_queue"] OFS $col["listen_overflows_per_s"] OFS \
                $col["listen_drops_per_s"] OFS $col["server_cpu_pct"] OFS $col["host_cpu_pct"]
            next
        }
        {
            t = $col["t_s"] + 0
            if (t > last) last = t
            if ($col["phase"] + 0 > phase[t]) phase[t] = $col["phase"] + 0
            n = split("offered_per_s retries_per_s tcp_connected_per_s handshakes_per_s online established_online in_flight " \
                "reset_per_s refused_per_s timeouts_per_s closed_after_connack_per_s dropped_per_s established_lost", sums, " ")
            for (i = 1; i <= n; i++) sum[t, i] += $col[sums[i]]
            pongs_missing[t] += $col["pongs_missing"]
            m = split("connack_p50_us connack_p99_us login_p99_us pong_p99_us", percentiles, " ")
            for (i = 1; i <= m; i++) worst[t, i] = larger(worst[t, i], $col[percentiles[i]])
        }
        END {
            print "t_s,phase,offered_per_s,retries_per_s,tcp_connected_per_s,handshakes_per_s,online,established_online," \
                "in_flight,reset_per_s,refused_per_s,timeouts_per_s,closed_after_connack_per_s,dropped_per_s," \
                "established_lost,connack_p50_ms,connack_p99_ms,login_p99_ms,pong_p99_ms,pongs_missing_per_s,server_accepted_per_s," \
                "server_auth_ok_per_s,server_closed_per_s,server_pending_handshakes,accept_queue," \
                "listen_overflows_per_s,listen_drops_per_s,server_cpu_pct,host_cpu_pct"
            for (t = 1; t <= last; t++) {
                line = t OFS phase[t] + 0
                for (i = 1; i <= n; i++) line = line OFS sum[t, i] + 0
                for (i = 1; i <= m; i++) line = line OFS ms(worst[t, i])
                line = line OFS pongs_missing[t] - pongs_missing[t - 1]
                print line OFS (t in server ? server[t] : ",,,,,,,,")
            }
        }' "$out_dir"/bench-*.csv "$out_dir/samples.csv" >"$out_dir/storm.csv"
}

# The "storm:" block of summary.txt, from storm.csv. The storm window: from
# the storm's first second while connects were still being offered, waiting
# in flight or queued in the server's accept queue.
storm_summary() {
    local backlog server_closed overflows achieved
    backlog=$(cat "$out_dir/accept-backlog.txt" 2>/dev/null || echo "-")
    # Totals from the final limaoim-stat snapshot and the kernel counters
    # (the sampler may miss seconds on a busy host).
    server_closed=$(jq -r '[.counters.closed | to_entries[] | select(.key != "peer_closed" and .key != "client_disconnect")
        | "\(.key) \(.value)" | select(endswith(" 0") | not)] | if length == 0 then "none" else join(", ") end' \
        "$out_dir/server-stat-final.json" 2>/dev/null || echo "-")
    overflows=$(awk 'FNR == NR { before[$1] = $2; next }
        $1 == "TcpExtListenOverflows" || $1 == "TcpExtListenDrops" { printf "%s +%d", (n++ ? ", drops" : "overflows"), $2 - before[$1] }
        END { print "" }' "$out_dir/nstat-before.txt" "$out_dir/nstat-after.txt")
    # Each load process's storm clients / the time it took to offer them,
    # summed: exact where the per-second median has only partial seconds.
    achieved=$({ grep -h '^  storm:' "$out_dir"/bench-*.log || true; } |
        sed -n 's/.* offered [0-9]* by t=[0-9.]*s (\([0-9]*\)\/s).*/\1/p' | awk '{ sum += $1 } END { print sum + 0 }')
    awk -F, -v requested="$storm_rate" -v storm_clients="$((storm_per_machine * machines))" -v backlog="$backlog" \
        -v server_closed="$server_closed" -v overflows="$overflows" -v achieved="$achieved" '
        function median(values, count,    sorted, i, j, swap) {
            if (count == 0) return "-"
            for (i = 1; i <= count; i++) sorted[i] = values[i]
            for (i = 2; i <= count; i++)
                for (j = i; j > 1 && sorted[j - 1] > sorted[j]; j--) { swap = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = swap }
            return count % 2 ? sorted[(count + 1) / 2] : (sorted[count / 2] + sorted[count / 2 + 1]) / 2
        }
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        {
            t = $1 + 0; phase = $col["phase"] + 0
            if (phase >= 1 && !start) start = t
            if (phase == 1) { offering[++offering_count] = $col["offered_per_s"] - $col["retries_per_s"]; last_offer = t }
            if (start && (phase == 1 || $col["in_flight"] + 0 > 0 || $col["accept_queue"] + 0 > 0)) {
                handshakes[++window] = $col["handshakes_per_s"] + 0
                window_end = t
            }
            if (start) {
                resets += $col["reset_per_s"]; refused += $col["refused_per_s"]; timeouts += $col["timeouts_per_s"]
                closed += $col["closed_after_connack_per_s"]; dropped += $col["dropped_per_s"]
                retries += $col["retries_per_s"]
                pongs_missing += $col["pongs_missing_per_s"]
            }
            if ($col["accept_queue"] + 0 > queue_peak) queue_peak = $col["accept_queue"] + 0
            if ($col["connack_p99_ms"] != "" && $col["connack_p99_ms"] + 0 > connack_p99) connack_p99 = $col["connack_p99_ms"] + 0
            if ($col["pong_p99_ms"] != "" && start && $col["pong_p99_ms"] + 0 > pong_p99) pong_p99 = $col["pong_p99_ms"] + 0
            if (!start) established_before = $col["established_online"] + 0
            established_lost = $col["established_lost"] + 0; online = $col["online"] + 0; end = t
        }
        END {
            if (!start) { print "storm:    did not start (see bench-k.log)"; exit }
            # The first and last seconds of the offering are partial.
            n = 0
            for (i = 2; i < offering_count; i++) steady[++n] = offering[i]
            if (n == 0) for (i = 1; i <= offering_count; i++) steady[++n] = offering[i]
            low = ""; high = 0
            for (i = 1; i <= window; i++) {
                if (low == "" || handshakes[i] < low) low = handshakes[i]
                if (handshakes[i] > high) high = handshakes[i]
            }
            printf "storm:    %d clients offered from t=%ds to t=%ds at %d/s (requested %d/s; per-second median %s/s)\n",
                storm_clients, start, last_offer, achieved, requested, median(steady, n)
            if (achieved < 0.9 * requested)
                printf "WARNING:  the load processes offered only %d/s of the %d/s asked for: they were short of CPU" \
                    " (see host_cpu_pct in storm.csv; over loopback a connect costs the connecting side the TCP" \
                    " handshake'"'"'s kernel work too)\n", achieved, requested
            printf "          completed handshakes/s over the storm window t=%d..%ds: median %s, min %s, max %d;" \
                " online at the end %d\n", start, window_end, median(handshakes, window), low, high, online
            series = ""
            for (i = 1; i <= window; i += 5) {
                sum = 0; count = 0
                for (j = i; j < i + 5 && j <= window; j++) { sum += handshakes[j]; count++ }
                series = series sprintf("%s%d", series == "" ? "" : " ", sum / count)
            }
            printf "          handshakes/s, 5-s means from the storm'"'"'s start: %s\n", series
            printf "          established dropped: %d of %d (target 0); connects reset by the server before CONNACK: %d," \
                " refused: %d (target 0); online clients closed by the server: %d, dropped for missed PONGs: %d\n",
                established_lost, established_before, resets, refused, closed, dropped
            printf "          heartbeats that found the previous PING unanswered (a PONG later than the heartbeat" \
                " interval) from the storm'"'"'s start: %d\n", pongs_missing
            printf "          connects timed out (no CONNACK in time): %d; retries: %d; the server closed (limaoim-stat, all" \
                " reasons but peer_closed and client_disconnect): %s\n", timeouts, retries, server_closed
            printf "          accept queue peak %d as sampled (backlog of all listeners: %s); listen %s (kernel," \
                " during the load); worst per-second p99 from the storm'"'"'s start: CONNECT->CONNACK %.1f ms," \
                " PING->PONG %.1f ms\n", queue_peak, backlog, overflows, connack_p99, pong_p99
        }' "$out_dir/storm.csv"
    echo
}

write_summary() {
    local ramp_end hold_to=$((bench_timeout_seconds - 1)) end=$bench_timeout_seconds
    # A storm run ends by itself (-storm-hold), before -timeout: at the last
    # second the load processes reported.
    if $storm && [[ -s "$out_dir/storm.csv" ]]; then
        end=$(awk -F, 'NR > 1 { last = $1 } END { print last + 0 }' "$out_dir/storm.csv")
        hold_to=$((end - 1))
    fi
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

    local network="loopback" per_machine="cids and -srcs 127.0.k.2-127.0.k.$last_source per process k"
    local counters_scope="host-wide" both_ends="both ends of its loopback connection" inuse_scope="host-wide"
    if $netns; then
        network="network namespaces (1 server + $machines load, veth)"
        per_machine="cids, -hostname 10.201.k.1 and -srcs 10.201.k.2-10.201.k.$last_source per process k, in namespace $ns_prefix-mk"
        counters_scope="server and load namespaces summed"
        both_ends="both ends of its veth connection: the kernel counts TCP memory for all namespaces together"
        inuse_scope="in the server's namespace"
    fi
    if $storm; then
        echo "limaoim login storm: $machines load processes x ($clients_per_machine established + $storm_per_machine storm)" \
            "clients = $all_clients, storm at $storm_rate/s, $network"
    else
        echo "limaoim online test: $machines load processes x $clients_per_machine clients = $total_clients, $network"
    fi
    echo "date:     $started_at"
    echo "command:  $command_line"
    echo "server:   $(cat "$out_dir/server.cmd")"
    echo "          $(grep -m1 -i 'capacity' "$out_dir/server.log" || echo '(no capacity line in server.log)')"
    echo "load:     $(head -1 "$out_dir/bench.cmd") ($per_machine)"
    if $netns; then
        echo "network:  server in namespace $server_ns on 0.0.0.0; per process k a veth pair, lmo-mk 10.201.k.1/24" \
            "<-> lmo-srv 10.201.k.2-10.201.k.$last_source/24 in namespace $ns_prefix-mk"
        echo "sysctls:  server namespace: $(namespace_sysctls "$server_ns")"
        echo "          each load namespace: $(namespace_sysctls "$(load_ns 1)")"
    fi
    echo "host:     Linux $(uname -r), $(nproc) CPUs, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
    if $storm; then
        echo "timing:   established ramp, then after ${storm_delay_seconds}s the storm; stop ${hold_seconds}s after the last" \
            "storm client was offered (-storm-hold), at the latest at -timeout ${bench_timeout_seconds}s"
    else
        echo "timing:   ramp allowance ${ramp_allowance_seconds}s + hold ${hold_seconds}s = -timeout ${bench_timeout_seconds}s"
    fi
    echo
    if $storm; then storm_summary; fi
    echo "online:   peak $(column_stat online 0 "$end" max) of $all_clients; all online at t=${ramp_end}s" \
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
        "growth per client $(ratio "$((rss_peak * 1024 - rss_base * 1024))" "$all_clients" 0) bytes"
    echo "kernel TCP mem: baseline $(ratio "$((tcp_base * 4))" 1024 1) MiB, peak $(ratio "$((tcp_peak * 4))" 1024 1) MiB" \
        "($tcp_peak pages); per client $(ratio "$(((tcp_peak - tcp_base) * 4096))" "$all_clients" 0) bytes" \
        "($both_ends); TCP sockets in use at peak $inuse_peak ($inuse_scope)"
    echo "kernel Slab:   baseline $(mib "$slab_base") MiB, peak $(mib "$slab_peak") MiB;" \
        "growth per client $(ratio "$(((slab_peak - slab_base) * 1024))" "$all_clients" 0) bytes (both ends)"
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
        grep -E '^(summary|  ramp|  storm|  connects|  established|  latency|  end|  cpu|verdict):' "$out_dir/bench-$k.log" |
            sed 's/^/    /' || echo "    (no summary)"
    done
}

if $netns; then setup_netns; fi
start_server
echo "server pid $server_pid: $(grep -m1 -i 'capacity' "$out_dir/server.log" || true)" >&2
# The accept backlog of all the server's listeners (ss Send-Q: the listen()
# backlog capped by net.core.somaxconn).
in_server_ns ss -Hltn "sport = :$port" | awk '{ backlog += $3 } END { print backlog + 0 }' >"$out_dir/accept-backlog.txt"

: >"$out_dir/bench.pids"
: >"$out_dir/bench.cmd"
readonly t0_us=$((${EPOCHREALTIME/./} + baseline_seconds * 1000000))
# The sampler at a higher priority than the server and the load (root only),
# so that a busy run still gets a row every second.
sampler_nice=()
((EUID != 0)) || sampler_nice=(nice -n -5)
"${sampler_nice[@]}" "$script_dir/sample.sh" --server-pid "$server_pid" --stat "$stat_bin" --instance "$port" --t0-us "$t0_us" \
    --load-pids "$out_dir/bench.pids" --listen-port "$port" \
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
if $storm; then
    echo "$machines x ($clients_per_machine established + $storm_per_machine storm) clients started; storm at" \
        "$storm_rate/s ${storm_delay_seconds}s after the established ramp, hold ${hold_seconds}s" >&2
else
    echo "$machines x $clients_per_machine clients started; ramp allowance ${ramp_allowance_seconds}s + hold ${hold_seconds}s" >&2
fi

wait_for_machines
network_counters >"$out_dir/nstat-after.txt"
"$stat_bin" --instance "$port" --json >"$out_dir/server-stat-final.json" 2>&1 || true
# A few more samples show the server draining the closed connections.
sleep 3
stop_sampler
stop_server

if $storm; then write_storm_csv; fi
write_summary >"$out_dir/summary.txt"
gnuplot -e "samples='$out_dir/samples.csv'; output='$out_dir/online.png'; clients=$all_clients" \
    "$script_dir/plot_online.gp" 2>"$out_dir/gnuplot.log" || echo "online.sh: gnuplot failed, see $out_dir/gnuplot.log" >&2
if $storm; then
    gnuplot -e "storm='$out_dir/storm.csv'; output='$out_dir/storm.png'; rate=$storm_rate; established=$total_clients" \
        "$script_dir/plot_storm.gp" 2>>"$out_dir/gnuplot.log" || echo "online.sh: gnuplot failed, see $out_dir/gnuplot.log" >&2
fi
cat "$out_dir/summary.txt"
echo "outputs in $out_dir" >&2

[[ "$server_status" == 0 ]] || exit 1
for status in "${bench_statuses[@]}"; do [[ "$status" == 0 ]] || exit 1; done
