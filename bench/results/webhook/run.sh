#!/usr/bin/env bash
# The runs behind BENCHMARKS.md "Webhooks": each configuration alternated with
# the others in one session; raw outputs next to this file (NAME-I.txt:
# stdout, NAME-I.err: stderr). Run from the repository root.
#   bench/results/webhook/run.sh throughput|notify-memory|online-memory [ROUNDS]
#   (throughput: DURATION=S, default 15; BATCH1000=0 leaves out the
#   --webhook-notify-batch 1000 configuration)
set -euo pipefail
what=$1; rounds=${2:-3}
out=bench/results/webhook
B=(bench/bench_message.sh load --build-dir build-release --durability group --workers 2)
run() {  # NAME I ARGS...
  local name=$1 i=$2; shift 2
  echo "== $name-$i: $*" >&2
  "$@" >"$out/$name-$i.txt" 2>"$out/$name-$i.err" || echo "   rc=$?" >&2
}
for i in $(seq "$rounds"); do
  case "$what" in
    throughput)
      P=(-- --mode person --pairs 500 --window 16 --duration "${DURATION:-15}" --warmup 3 --threads 2 --version 4)
      run person-off "$i" "${B[@]}" --webhook off "${P[@]}"
      run person-ok "$i" "${B[@]}" --webhook ok "${P[@]}"
      if [ "${BATCH1000:-1}" = 1 ]; then
        run person-ok-batch1000 "$i" "${B[@]}" --webhook ok --server-arg --webhook-notify-batch --server-arg 1000 "${P[@]}"
      fi
      ;;
    notify-memory)
      P=(-- --mode person --pairs 100 --rate 10000 --duration 10 --warmup 0 --threads 2 --version 4)
      run notify100k-off "$i" "${B[@]}" --webhook off "${P[@]}"
      run notify100k-hang "$i" "${B[@]}" --webhook hang "${P[@]}"
      ;;
    online-memory)
      P=(-- --mode person --pairs 9000 --rate 100 --duration 2 --warmup 0 --threads 2 --version 4 --login-timeout 60)
      run online18k-off "$i" "${B[@]}" --settle 3 --webhook off "${P[@]}"
      run online18k-hang "$i" "${B[@]}" --settle 3 --webhook hang "${P[@]}"
      ;;
    *) echo "throughput|notify-memory|online-memory" >&2; exit 2;;
  esac
done
