#!/usr/bin/env bash
# The README's two quick-start commands, on a fresh Debian 12 machine as root:
#   bash tools/setup.sh run    install, build, start the server on its defaults
#   bash tools/setup.sh test   install, build (normal + ASan/UBSan), run every test
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(
  build-essential meson ninja-build pkg-config
  liburing-dev libmimalloc-dev libssl-dev doctest-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev
  clang libclang-rt-14-dev shellcheck gnuplot-nox iproute2 procps jq python3 python3-yaml
  librocksdb-dev libhttp-parser-dev zlib1g-dev curl libcurl4-openssl-dev
  prometheus chromium libhiredis-dev redis-server redis-sentinel
)

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Node.js 20 comes with the machine (nodesource); Debian's own otherwise.
# The JavaScript client's packages come from its lockfile; the demo page
# embedded in the server needs them at build time. clients/wksdk: WuKongIM's
# JS SDK, pinned, for its tests against the WKProto listener and, bundled, for
# the demo's second page.
install_js() {
  if ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq nodejs npm >/dev/null
  fi
  (cd clients/js && npm ci --no-audit --no-fund --loglevel=error)
  (cd clients/wksdk && npm ci --no-audit --no-fund --loglevel=error && npm run --silent demo)
}

build() {  # build DIR [meson options...]
  local dir=$1
  shift
  configure "$dir" "$@"
  ninja -C "$dir"
}

configure() {  # configure DIR [meson options...]
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null
  fi
}

# How long each stage of `test` took, printed when the run ends, also when a
# stage fails (then the stage running is the one that failed).
stage_names=()
stage_seconds=()
stage_running=""
stage_started=0

begin_stage() {  # begin_stage NAME: ends the stage running, starts NAME
  end_stage
  stage_running=$1
  stage_started=$SECONDS
}

end_stage() {
  if [ -n "$stage_running" ]; then
    stage_names+=("$stage_running")
    stage_seconds+=($((SECONDS - stage_started)))
    stage_running=""
  fi
}

print_stage_times() {  # print_stage_times EXIT_STATUS
  local status=$1 failed=$stage_running i note
  end_stage
  echo "setup: stage times"
  for i in "${!stage_names[@]}"; do
    note=""
    if [ "$status" != 0 ] && [ "${stage_names[i]}" = "$failed" ]; then note="  FAILED (exit $status)"; fi
    printf '  %-16s %3d:%02d%s\n' "${stage_names[i]}" $((stage_seconds[i] / 60)) $((stage_seconds[i] % 60)) "$note"
  done
  printf '  %-16s %3d:%02d\n' total $((SECONDS / 60)) $((SECONDS % 60))
}

# Runs "$@" in a session of its own (the EXIT trap ends the whole session's
# process group) at the lowest CPU priority; call it as a background job.
# With the kernel's autogroup scheduling (sched_autogroup_enabled) each
# session is a scheduling group of its own, where nice alone weighs nothing
# against other sessions: a nice 19 compiler in its own session took as much
# CPU as the normal tests. The group's own nice (/proc/self/autogroup) is set
# too, by the process itself, once it is in its new session.
lowest_priority_session() {
  exec setsid bash -c 'echo 19 >/proc/self/autogroup 2>/dev/null || true; exec nice -n 19 "$@"' lowest "$@"
}

# The EXIT trap of `test`: ends the background builds' process groups
# (background_groups, each started by setsid) and prints the stage times.
end_test_run() {
  local status=$? group
  for group in "${background_groups[@]}"; do
    kill -- "-$group" 2>/dev/null || true
  done
  print_stage_times "$status"
}

case "${1:-}" in
  run)
    install_packages
    install_js
    build build-release --buildtype=release
    shift
    exec ./build-release/limaoim "$@"
    ;;
  test)
    # The background builds run in sessions of their own
    # (lowest_priority_session), all ended with the run, which prints its stage times however it ends.
    background_groups=()
    trap end_test_run EXIT
    begin_stage install
    install_packages
    install_js
    # The AddressSanitizer + UBSan tree compiles at the lowest CPU priority
    # from here on, while the normal tree builds and its tests run: they get
    # the CPU whenever they want it (their timing checks see an idle
    # machine), the compiler the rest. It builds only what its stage runs:
    # the server, limaoim-stat and the unit tests (the alias target
    # asan-stage); the integration tests are a client over sockets, the
    # normal tree's, pointed at this tree's server.
    asan_log=build-asan.log
    lowest_priority_session bash -c "$(declare -f configure); configure build-asan -Db_sanitize=address,undefined \
      -Db_lundef=false -Dbuildtype=debug -Doptimization=1 && ninja -C build-asan asan-stage" >"$asan_log" 2>&1 &
    asan_build=$!
    background_groups+=("$asan_build")
    begin_stage "normal build"
    build build
    begin_stage "normal tests"
    meson test -C build --print-errorlogs --num-processes 1
    begin_stage "ASan build wait"
    if ! wait "$asan_build"; then
      tail -n 50 "$asan_log"
      exit 1
    fi
    # The fuzz targets' clang tree (tests/fuzz/run.sh) compiles at the lowest
    # priority while the ASan tests run.
    fuzz_log=build-fuzz.log
    lowest_priority_session tests/fuzz/run.sh --build-only >"$fuzz_log" 2>&1 &
    fuzz_build=$!
    background_groups+=("$fuzz_build")
    begin_stage "ASan tests"
    # The ASan tree (libc malloc, leak detection at clean exit): the unit
    # tests, the deployment check, the JavaScript client's chat and
    # WuKongIM's SDK in Node (the WKProto codec) through its server, then the normal tree's integration tests against its
    # server and limaoim-stat. Left to the normal stage, run once: the load
    # tests (timing-sensitive), the Redis engine's run of the messaging
    # suites (the cluster cases run Redis-mode nodes under ASan), the
    # browser (the same page and server as js-e2e), the scripts with no
    # sanitized code, the bench tools, and the integration cases that mostly
    # wait out an injected timeout (test suite "timeouts") or are load tests
    # (test suite "load": 25,000 clients).
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    meson test -C build-asan --no-rebuild --print-errorlogs --num-processes 1 --timeout-multiplier 3 --suite unit
    meson test -C build-asan --no-rebuild --print-errorlogs --num-processes 1 --timeout-multiplier 3 service js-e2e wksdk-node
    LIMAOIM_SERVER_BIN=$PWD/build-asan/limaoim LIMAOIM_STAT_BIN=$PWD/build-asan/limaoim-stat \
      ./build/tests/integration_tests --test-suite-exclude=timeouts,load
    unset ASAN_OPTIONS UBSAN_OPTIONS
    begin_stage "fuzz build wait"
    if ! wait "$fuzz_build"; then
      tail -n 50 "$fuzz_log"
      exit 1
    fi
    # Each libFuzzer target for a short run from its committed corpus.
    begin_stage fuzz
    tests/fuzz/run.sh 15
    end_stage
    ;;
  *)
    echo "usage: bash tools/setup.sh run [limaoim flags...] | test" >&2
    exit 2
    ;;
esac
