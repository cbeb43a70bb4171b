#!/usr/bin/env bash
# Samples a running limaoim server and the host kernel once a second, one CSV
# row per sample on stdout, until the server exits, a signal arrives or
# --max-seconds have passed.
#
#   bench/sample.sh --server-pid PID --stat build/limaoim-stat --instance 6666 \
#       --t0-us EPOCH_US [--load-pids FILE] [--max-seconds N] [--listen-port PORT] > samples.csv
#
# t_s is measured from --t0-us (microseconds since the epoch, as bash's
# EPOCHREALTIME without its dot), so rows taken before t0 have a negative t_s
# and serve as the baseline. Per-second columns (CPU, bytes) are deltas over
# the real interval since the previous row and are empty on the first row.
# host_cpu_pct is the whole host's busy time in percent of one core (up to
# 100 x cores), which shows when other processes compete for the CPUs.
# load_rss_kib sums the RSS of the processes listed in --load-pids (re-read
# every second, one pid a line) and all their descendants.
# tcp_inuse counts the TCP sockets of the server's network namespace
# (/proc/PID/net/sockstat shows that pid's namespace, so this also works when
# the server runs in a namespace of its own); tcp_mem_pages and slab_kib are
# host-wide, whatever the namespace.
# The last columns are about accepting: the server's accepted, auth_ok and
# closed-by-the-server counters (limaoim-stat; closed-by-the-server = every
# close reason but peer_closed and client_disconnect) as per-second deltas,
# its pending_handshakes gauge, the accept queue (accept_queue: the Recv-Q of
# its listening sockets on --listen-port, summed over the SO_REUSEPORT
# listeners; empty without --listen-port) and the kernel's TcpExt
# ListenOverflows and ListenDrops per second, all of the server's network
# namespace (ss through nsenter when that is not ours: root).
set -euo pipefail

usage() {
    sed -n '2,/^set /s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

server_pid=""
stat_bin=""
instance=""
t0_us=""
load_pids_file=""
max_seconds=86400
listen_port=""

while (($# > 0)); do
    case "$1" in
        --server-pid) server_pid="$2" ;;
        --stat) stat_bin="$2" ;;
        --instance) instance="$2" ;;
        --t0-us) t0_us="$2" ;;
        --load-pids) load_pids_file="$2" ;;
        --max-seconds) max_seconds="$2" ;;
        --listen-port) listen_port="$2" ;;
        *) usage ;;
    esac
    shift 2 || usage
done
[[ -n "$server_pid" && -n "$stat_bin" && -n "$instance" && -n "$t0_us" ]] || usage

clock_ticks_per_s=$(getconf CLK_TCK)
cpus=$(nproc)
readonly clock_ticks_per_s cpus

now_us() { echo "${EPOCHREALTIME/./}"; }

# Formats a signed count of tenths ("-25" -> "-2.5").
tenths() {
    local value=$1 sign=""
    if ((value < 0)); then sign="-" value=$((-value)); fi
    printf '%s%d.%d' "$sign" $((value / 10)) $((value % 10))
}

vm_rss_kib() {
    local key value _
    while read -r key value _; do
        if [[ "$key" == "VmRSS:" ]]; then echo "$value"; return; fi
    done 2>/dev/null <"/proc/$1/status"
    echo 0
}

# utime + stime in clock ticks. The fields are counted after the last ')' so
# that a command name with spaces cannot shift them.
cpu_ticks() {
    local line
    line=$(<"/proc/$1/stat")
    local -a fields
    read -ra fields <<<"${line##*) }"
    echo $((fields[11] + fields[12]))
}

# "TCP: inuse X orphan Y tw Z alloc A mem M" of the server's network
# namespace: prints "X M" (M in pages; the kernel counts it for all
# namespaces together).
tcp_inuse_and_mem_pages() {
    local label _ inuse rest sockstat="/proc/$server_pid/net/sockstat"
    [[ -r "$sockstat" ]] || sockstat=/proc/net/sockstat
    while read -r label _ inuse rest; do
        if [[ "$label" == "TCP:" ]]; then
            echo "$inuse ${rest##* }"
            return
        fi
    done <"$sockstat"
}

# Busy and total clock ticks of all CPUs together, from /proc/stat.
host_busy_and_total_ticks() {
    local label user nice system idle iowait irq softirq steal _
    read -r label user nice system idle iowait irq softirq steal _ </proc/stat
    local busy=$((user + nice + system + irq + softirq + steal))
    echo "$busy $((busy + idle + iowait))"
}

slab_kib() {
    local key value _
    while read -r key value _; do
        if [[ "$key" == "Slab:" ]]; then echo "$value"; return; fi
    done </proc/meminfo
}

descendants_and_self() {
    local child
    echo "$1"
    # shellcheck disable=SC2013 # the children files hold space-separated pids
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do descendants_and_self "$child"; done
}

load_rss_kib() {
    local total=0 listed pid
    [[ -n "$load_pids_file" && -r "$load_pids_file" ]] || { echo 0; return; }
    while read -r listed; do
        [[ -n "$listed" && -d /proc/$listed ]] || continue
        for pid in $(descendants_and_self "$listed"); do
            total=$((total + $(vm_rss_kib "$pid")))
        done
    done <"$load_pids_file"
    echo "$total"
}

# Prints "authenticated connections bytes_in bytes_out accepted auth_ok
# closed_by_server pending_handshakes".
server_counters() {
    "$stat_bin" --instance "$instance" --json 2>/dev/null |
        jq -r '[.gauges.authenticated, .gauges.connections, .counters.bytes_in, .counters.bytes_out,
                (.counters.accepted // 0), (.counters.auth_ok // 0),
                ([(.counters.closed // {}) | to_entries[]
                  | select(.key != "peer_closed" and .key != "client_disconnect") | .value] | add // 0),
                (.gauges.pending_handshakes // 0)] | @tsv' 2>/dev/null ||
        echo "0 0 0 0 0 0 0 0"
}

# ss in the server's network namespace.
server_ss() {
    if [[ "$(readlink "/proc/$server_pid/ns/net" 2>/dev/null)" == "$(readlink /proc/self/ns/net)" ]]; then
        ss "$@"
    else
        nsenter --net="/proc/$server_pid/ns/net" ss "$@"
    fi
}

# Connections waiting in the server's accept queues (all listeners on the port).
accept_queue() {
    [[ -n "$listen_port" ]] || return 0
    server_ss -Hltn "sport = :$listen_port" 2>/dev/null | awk '{ queued += $2 } END { print queued + 0 }'
}

# "ListenOverflows ListenDrops" of the server's namespace (TcpExt, cumulative).
listen_overflows_and_drops() {
    awk '$1 == "TcpExt:" && !header { for (i = 2; i <= NF; i++) name[i] = $i; header = 1; next }
         $1 == "TcpExt:" { for (i = 2; i <= NF; i++) value[name[i]] = $i }
         END { print value["ListenOverflows"] + 0, value["ListenDrops"] + 0 }' "/proc/$server_pid/net/netstat" 2>/dev/null ||
        echo "0 0"
}

echo "t_s,online,connections,server_rss_kib,server_cpu_pct,tcp_inuse,tcp_mem_pages,slab_kib,bytes_in_per_s,bytes_out_per_s,load_rss_kib,host_cpu_pct,accepted_per_s,auth_ok_per_s,server_closed_per_s,pending_handshakes,accept_queue,listen_overflows_per_s,listen_drops_per_s"

previous_us=""
previous_ticks=0
previous_in=0
previous_out=0
previous_host_busy=0
previous_host_total=0
previous_accepted=0
previous_auth_ok=0
previous_server_closed=0
previous_overflows=0
previous_drops=0
start_us=$(now_us)
for ((second = 0; second < max_seconds; second++)); do
    [[ -d /proc/$server_pid ]] || { echo "sample.sh: server $server_pid has exited" >&2; break; }
    sampled_us=$(now_us)
    read -r online connections bytes_in bytes_out accepted auth_ok server_closed pending <<<"$(server_counters)"
    read -r overflows drops <<<"$(listen_overflows_and_drops)"
    queued=$(accept_queue)
    ticks=$(cpu_ticks "$server_pid" 2>/dev/null || echo "$previous_ticks")
    read -r tcp_inuse tcp_mem_pages <<<"$(tcp_inuse_and_mem_pages)"
    read -r host_busy host_total <<<"$(host_busy_and_total_ticks)"
    cpu_pct="" in_per_s="" out_per_s="" host_cpu_pct=""
    accepted_per_s="" auth_ok_per_s="" server_closed_per_s="" overflows_per_s="" drops_per_s=""
    if [[ -n "$previous_us" ]]; then
        interval_us=$((sampled_us - previous_us))
        cpu_pct=$(tenths $(((ticks - previous_ticks) * 1000000000 / (clock_ticks_per_s * interval_us))))
        in_per_s=$(((bytes_in - previous_in) * 1000000 / interval_us))
        out_per_s=$(((bytes_out - previous_out) * 1000000 / interval_us))
        host_cpu_pct=$(tenths $(((host_busy - previous_host_busy) * 1000 * cpus / (host_total - previous_host_total))))
        accepted_per_s=$(((accepted - previous_accepted) * 1000000 / interval_us))
        auth_ok_per_s=$(((auth_ok - previous_auth_ok) * 1000000 / interval_us))
        server_closed_per_s=$(((server_closed - previous_server_closed) * 1000000 / interval_us))
        overflows_per_s=$(((overflows - previous_overflows) * 1000000 / interval_us))
        drops_per_s=$(((drops - previous_drops) * 1000000 / interval_us))
    fi
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$(tenths $(((sampled_us - t0_us) / 100000)))" \
        "$online" "$connections" "$(vm_rss_kib "$server_pid")" "$cpu_pct" "$tcp_inuse" "$tcp_mem_pages" \
        "$(slab_kib)" "$in_per_s" "$out_per_s" "$(load_rss_kib)" "$host_cpu_pct" \
        "$accepted_per_s" "$auth_ok_per_s" "$server_closed_per_s" "$pending" "$queued" "$overflows_per_s" "$drops_per_s"
    previous_us=$sampled_us previous_ticks=$ticks previous_in=$bytes_in previous_out=$bytes_out
    previous_host_busy=$host_busy previous_host_total=$host_total
    previous_accepted=$accepted previous_auth_ok=$auth_ok previous_server_closed=$server_closed
    previous_overflows=$overflows previous_drops=$drops

    next_us=$((start_us + (second + 1) * 1000000))
    wait_us=$((next_us - $(now_us)))
    if ((wait_us > 0)); then sleep "$((wait_us / 1000000)).$(printf '%06d' $((wait_us % 1000000)))"; fi
done
