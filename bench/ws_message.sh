#!/usr/bin/env bash
# Person-to-person messaging over raw TCP and over WebSocket in one run:
# --rounds pairs of bench/bench_message.sh load runs, TCP then WebSocket
# (--ws), each on a fresh server, with the same bench_message arguments
# (default: BENCHMARKS.md §8's, 500 pairs, window 16). Prints a markdown
# table (per round and medians) of delivered msgs/s and the latencies.
#
#   bench/ws_message.sh [--rounds 3] [--build-dir build-bench] [--durability group]
#                       [--workers 2] [--out DIR] [-- BENCH_MESSAGE_ARGS...]
#
# Writes into --out (default bench/results/websocket/message-<date>): per run
# R-tcp.txt / R-ws.txt (bench_message.sh's whole output), runs.csv and
# summary.md. Exit 0 when every run was clean (bench_message exit 0).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$script_dir")
readonly script_dir repo_dir
readonly command_line="$0 $*"

rounds=3
build_dir="$repo_dir/build-bench"
durability=group
workers=2
out_dir=""
bench_args=(--mode person --pairs 500 --window 16 --duration 15 --warmup 3 --threads 2 --version 4)
while (($# > 0)); do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --build-dir) build_dir=$2; shift 2 ;;
        --durability) durability=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --out) out_dir=$2; shift 2 ;;
        --) shift; bench_args=("$@"); break ;;
        *) sed -n '2,/^set /s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds needs a positive integer" >&2; exit 2; }
[[ -n "$out_dir" ]] || out_dir="$repo_dir/bench/results/websocket/message-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)

echo "round,transport,exit,online,delivered_per_s,sends_per_s,sendack_p50_us,sendack_p99_us,recv_p50_us,recv_p99_us,missing,duplicates,errors,bad,server_vmrss_kib,load1_before" \
    >"$out_dir/runs.csv"
all_clean=true
started_at=$(date -Is)
for ((round = 1; round <= rounds; round++)); do
    for transport in tcp ws; do
        ws_flag=()
        [[ "$transport" == ws ]] && ws_flag=(--ws)
        status=0
        load1=$(cut -d' ' -f1 /proc/loadavg)  # other work on the host shows here
        "$script_dir/bench_message.sh" load --build-dir "$build_dir" --durability "$durability" --workers "$workers" \
            "${ws_flag[@]}" -- "${bench_args[@]}" >"$out_dir/$round-$transport.txt" 2>&1 || status=$?
        ((status == 0)) || all_clean=false
        json=$(grep '^{' "$out_dir/$round-$transport.txt" | tail -1 || true)
        rss=$(sed -n 's/^# server VmRSS: \([0-9]*\) kB.*/\1/p' "$out_dir/$round-$transport.txt" | head -1)
        if [[ -z "$json" ]]; then
            echo "$round,$transport,$status,,,,,,,,,,,,${rss},$load1" >>"$out_dir/runs.csv"
        else
            jq -r --arg round "$round" --arg transport "$transport" --arg status "$status" --arg rss "${rss:-}" --arg load1 "$load1" \
                '[$round, $transport, $status, .online, (.delivered_per_s | floor), (.sends_per_s | floor),
                  .sendack_us.p50, .sendack_us.p99, .recv_us.p50, .recv_us.p99, .missing, .duplicates, .errors, .bad, $rss, $load1]
                 | map(tostring) | join(",")' <<<"$json" >>"$out_dir/runs.csv"
        fi
        echo "round $round $transport: $(tail -1 "$out_dir/runs.csv")" >&2
    done
done

{
    echo "# Person to person, raw TCP vs WebSocket ($rounds alternated rounds)"
    echo
    echo "date: $started_at; host: Linux $(uname -r), $(nproc) CPUs"
    echo
    echo "command: \`$command_line\`"
    echo
    echo "each run: \`bench/bench_message.sh load --build-dir $build_dir --durability $durability --workers $workers [--ws] -- ${bench_args[*]}\`"
    echo
    echo "| round | transport | delivered msgs/s | SEND→SENDACK p50 / p99 ms | SEND→RECV p50 / p99 ms | missing / dup / errors / bad | exit | host load (1 min) before |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F, 'NR > 1 { printf "| %s | %s | %s | %.1f / %.1f | %.1f / %.1f | %s / %s / %s / %s | %s | %s |\n", $1,
        $2 == "ws" ? "WebSocket" : "TCP", $5, $7 / 1000, $8 / 1000, $9 / 1000, $10 / 1000, $11, $12, $13, $14, $3, $16 }' "$out_dir/runs.csv"
    echo
    awk -F, '
        function median(list, count,    sorted, i, j, swap) {
            if (count == 0) return 0
            for (i = 1; i <= count; i++) sorted[i] = list[i]
            for (i = 2; i <= count; i++)
                for (j = i; j > 1 && sorted[j - 1] > sorted[j]; j--) { swap = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = swap }
            return count % 2 ? sorted[(count + 1) / 2] : (sorted[count / 2] + sorted[count / 2 + 1]) / 2
        }
        NR > 1 && $5 != "" { t = $2; n[t]++; d[t, n[t]] = $5; a50[t, n[t]] = $7; a99[t, n[t]] = $8; r50[t, n[t]] = $9; r99[t, n[t]] = $10
            rounds[t] = rounds[t] (rounds[t] == "" ? "" : ", ") $5 }
        END {
            print "| median | delivered msgs/s (per round) | SEND→SENDACK p50 / p99 ms | SEND→RECV p50 / p99 ms |"
            print "|---|---|---|---|"
            for (k = 1; k <= 2; k++) {
                t = k == 1 ? "tcp" : "ws"
                delete x; delete y; delete z; delete u; delete v
                for (i = 1; i <= n[t]; i++) { x[i] = d[t, i]; y[i] = a50[t, i]; z[i] = a99[t, i]; u[i] = r50[t, i]; v[i] = r99[t, i] }
                m[t] = median(x, n[t])
                printf "| %s | **%d** (%s) | %.1f / %.1f | %.1f / %.1f |\n", k == 1 ? "TCP" : "WebSocket", m[t], rounds[t],
                    median(y, n[t]) / 1000, median(z, n[t]) / 1000, median(u, n[t]) / 1000, median(v, n[t]) / 1000
            }
            if (m["tcp"] > 0) printf "\nWebSocket / TCP: %.3f\n", m["ws"] / m["tcp"]
        }' "$out_dir/runs.csv"
} >"$out_dir/summary.md"
cat "$out_dir/summary.md"
echo "outputs in $out_dir" >&2
$all_clean
