#!/usr/bin/env bash
# Fuzzes each target for SECONDS, seeded with its committed corpus; see
# tests/fuzz/README.md. Configures build-fuzz (clang, ASan + UBSan, coverage
# in the libraries) on first use and builds only the fuzz targets.
#
#   tests/fuzz/run.sh SECONDS [--merge] [TARGET...]
#   tests/fuzz/run.sh --build-only [TARGET...]
#
# --build-only: configure and build, fuzz nothing (CI builds while other
#          tests run, then fuzzes: tools/setup.sh).
# --merge: afterwards, add the new inputs that widen coverage to the committed
#          corpus (tests/fuzz/corpus/TARGET/).
# Exit status: 0 when every target ran clean; 1 on any crash, leak, timeout or
# out-of-memory (the input is kept in tests/fuzz/crashes/); 2 on bad usage.
set -euo pipefail

readonly all_targets=(fuzz_split fuzz_decode fuzz_connect fuzz_crypto fuzz_http fuzz_ws_frame)
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly repo_root
readonly build_dir=$repo_root/build-fuzz
readonly corpus_root=$repo_root/tests/fuzz/corpus
readonly crash_root=$repo_root/tests/fuzz/crashes

usage() {
    echo "usage: tests/fuzz/run.sh SECONDS [--merge] [TARGET...] | --build-only [TARGET...]" >&2
    echo "targets: ${all_targets[*]}" >&2
    exit 2
}

is_known_target() {
    local candidate=$1 known
    for known in "${all_targets[@]}"; do
        [[ $candidate == "$known" ]] && return 0
    done
    return 1
}

configure_if_missing() {
    [[ -f $build_dir/build.ninja ]] && return 0
    echo "configuring $build_dir"
    (cd "$repo_root" && CXX=clang++ meson setup build-fuzz \
        -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=enabled -Dmimalloc=disabled \
        -Dcpp_args=-fsanitize=fuzzer-no-link) >/dev/null
}

# The value of libFuzzer's "stat::NAME:" line in LOG, or "?" when it crashed first.
final_stat() {
    local log=$1 name=$2 value
    value=$(sed -n "s/^stat::$name: *//p" "$log" | tail -n 1)
    echo "${value:-?}"
}

# "cov: N ft: N" of the last status line.
last_coverage() {
    local log=$1 line
    line=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1 || true)
    if [[ $line =~ cov:\ ([0-9]+)\ ft:\ ([0-9]+) ]]; then
        echo "cov ${BASH_REMATCH[1]} ft ${BASH_REMATCH[2]}"
    else
        echo "cov ?"
    fi
}

# Fuzzes TARGET for SECONDS, prints its summary line(s); returns libFuzzer's
# exit status.
fuzz_target() {
    local target=$1 seconds=$2
    local binary=$build_dir/tests/fuzz/$target
    local scratch=$build_dir/fuzz-corpus/$target
    local log=$build_dir/fuzz-logs/$target.log
    mkdir -p "$scratch" "$(dirname "$log")" "$crash_root"
    local status=0
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$binary" -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
        -artifact_prefix="$crash_root/$target-" "$scratch" "$corpus_root/$target" >"$log" 2>&1 || status=$?

    printf '%-13s %s executions, %s exec/s, %s, %s new inputs' "$target" \
        "$(final_stat "$log" number_of_executed_units)" "$(final_stat "$log" average_exec_per_sec)" \
        "$(last_coverage "$log")" "$(final_stat "$log" new_units_added)"
    if ((status == 0)); then
        echo ": ok"
    else
        echo ": FAILED (exit $status, log $log)"
        grep -E 'ERROR: |FUZZ_CHECK|runtime error|Test unit written to|^artifact_prefix' "$log" | head -n 20 || true
    fi
    return "$status"
}

merge_into_corpus() {
    local target=$1
    local before after
    before=$(find "$corpus_root/$target" -type f | wc -l)
    # -use_counters=0: keep an input only for a new edge, not for a new hit
    # count of a known one, so the committed corpus stays small (the scratch
    # corpus in build-fuzz keeps everything for the next campaign).
    "$build_dir/tests/fuzz/$target" -merge=1 -use_counters=0 "$corpus_root/$target" "$build_dir/fuzz-corpus/$target" \
        >"$build_dir/fuzz-logs/$target.merge.log" 2>&1
    after=$(find "$corpus_root/$target" -type f | wc -l)
    echo "$target: merged $((after - before)) inputs into tests/fuzz/corpus/$target ($(du -sh "$corpus_root/$target" | cut -f1))"
}

main() {
    (($# >= 1)) || usage
    local seconds=$1 build_only=false
    shift
    if [[ $seconds == --build-only ]]; then
        build_only=true
    elif ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
        usage
    fi
    local merge=false targets=() argument
    for argument in "$@"; do
        if [[ $argument == --merge ]]; then
            merge=true
        elif is_known_target "$argument"; then
            targets+=("$argument")
        else
            usage
        fi
    done
    ((${#targets[@]} > 0)) || targets=("${all_targets[@]}")

    configure_if_missing
    local build_log=$build_dir/fuzz-logs/build.log
    mkdir -p "$(dirname "$build_log")"
    if ! ninja -C "$build_dir" -j2 "${targets[@]/#/tests/fuzz/}" >"$build_log" 2>&1; then
        tail -n 40 "$build_log" >&2
        echo "build failed (log $build_log)" >&2
        exit 1
    fi
    if [[ $build_only == true ]]; then return 0; fi

    # As many targets at a time as there are cores: a fuzzer is one process,
    # so each still gets a core for its SECONDS. Their summaries are printed
    # in order once a batch has ended.
    local batch_size passed=0 failed=0 first i status target
    batch_size=$(nproc)
    for ((first = 0; first < ${#targets[@]}; first += batch_size)); do
        local batch=("${targets[@]:first:batch_size}") pids=()
        for target in "${batch[@]}"; do
            fuzz_target "$target" "$seconds" >"$build_dir/fuzz-logs/$target.summary" &
            pids+=($!)
        done
        for i in "${!batch[@]}"; do
            target=${batch[i]}
            status=0
            wait "${pids[i]}" || status=$?
            cat "$build_dir/fuzz-logs/$target.summary"
            if ((status == 0)); then
                passed=$((passed + 1))
                if [[ $merge == true ]]; then merge_into_corpus "$target"; fi
            else
                failed=$((failed + 1))
            fi
        done
    done
    echo "$passed passed, $failed failed"
    ((failed == 0))
}

main "$@"
