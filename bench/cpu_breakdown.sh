#!/usr/bin/env bash
# Where a running server's CPU goes, from a perf profile of the process.
#
#   bench/cpu_breakdown.sh PID [SECONDS]     (default 20 s; needs perf: apt-get install linux-perf)
#
# Samples the process (cpu-clock, call graphs) and sorts every sample into one
# share by the kernel and user functions on its stack:
#   peer delivery   softirq run inside the server's own send: on loopback (and
#                   veth) the kernel delivers each packet into the receiving
#                   socket in the sender's context, so the clients' receive
#                   work is charged to the server; between machines it runs
#                   on the client machine
#   send            the rest of the send path (TCP transmit, timers)
#   recv            receives (io_recv: TCP receive, copy, buffer selection)
#   wait and wake   waiting in io_uring_enter and being woken
#   other kernel    everything else in the kernel (polls, accept, close, ...)
#   user space      the server's own code and its libraries
set -euo pipefail

(($# >= 1)) || { sed -n '2,/^set /s/^# \{0,1\}//p' "$0" >&2; exit 2; }
pid=$1
seconds=${2:-20}
[[ -d /proc/$pid ]] || { echo "cpu_breakdown.sh: no process $pid" >&2; exit 2; }
command -v perf >/dev/null || { echo "cpu_breakdown.sh: perf is missing (apt-get install linux-perf)" >&2; exit 2; }

data=$(mktemp)
trap 'rm -f "$data"' EXIT
perf record -q -e cpu-clock -F 2000 -g -o "$data" -p "$pid" -- sleep "$seconds" >/dev/null 2>&1
perf script -i "$data" 2>/dev/null | awk '
    function classify() {
        if (!in_sample) return
        if (stack ~ / io_send / && stack ~ / handle_softirqs /) share["peer delivery"]++
        else if (stack ~ / io_send /) share["send"]++
        else if (stack ~ / io_recv /) share["recv"]++
        else if (stack ~ / (io_cqring_wait|schedule|finish_task_switch) /) share["wait and wake"]++
        else if (kernel) share["other kernel"]++
        else share["user space"]++
        total++
        in_sample = 0
    }
    /^[^ \t]/ { classify(); in_sample = 1; stack = " "; kernel = 0; first = 1; next }
    /^[ \t]+[0-9a-f]+ / {
        symbol = $2
        sub(/\+0x[0-9a-f]+$/, "", symbol)
        stack = stack symbol " "
        if (first && $0 ~ /kernel\.kallsyms/) kernel = 1
        first = 0
        next
    }
    /^$/ { classify() }
    END {
        classify()
        if (total == 0) { print "no samples (is the server busy?)"; exit 1 }
        n = split("peer delivery,send,recv,wait and wake,other kernel,user space", order, ",")
        for (i = 1; i <= n; i++) printf "%-14s %5.1f%%\n", order[i], 100 * share[order[i]] / total
        printf "(%d samples)\n", total
    }'
