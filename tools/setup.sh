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
  clang libclang-rt-14-dev shellcheck gnuplot-nox iproute2 procps jq python3
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
# embedded in the server needs them at build time.
install_js() {
  if ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq nodejs npm >/dev/null
  fi
  (cd clients/js && npm ci --no-audit --no-fund --loglevel=error)
}

build() {  # build DIR [meson options...]
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null
  fi
  ninja -C "$dir"
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
    install_packages
    install_js
    build build
    # The AddressSanitizer + UBSan tree compiles at the lowest CPU priority
    # while the normal build's tests run: they get the CPU whenever they want
    # it (their timing checks see an idle machine), the compiler the rest.
    asan_log=build-asan.log
    (nice -n 19 bash -c "$(declare -f build); build build-asan -Db_sanitize=address,undefined -Db_lundef=false \
      -Dbuildtype=debug -Doptimization=1" >"$asan_log" 2>&1) &
    asan_build=$!
    trap 'kill "$asan_build" 2>/dev/null || true' EXIT
    meson test -C build --print-errorlogs --num-processes 1
    if ! wait "$asan_build"; then
      tail -n 50 "$asan_log"
      exit 1
    fi
    # The same suite against the ASan build (libc malloc, leak detection at
    # clean exit), but for the load tests (tens of thousands of clients
    # through the code the integration tests cover), the browser (the same
    # page and server as js-e2e) and the Redis engine's run of the messaging
    # suites (the cluster cases run Redis-mode nodes under ASan): CI's time.
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      meson test -C build-asan --print-errorlogs --num-processes 1 --timeout-multiplier 3 \
        --no-suite load --no-suite browser --no-suite engines
    # Each libFuzzer target for a short run from its committed corpus (clang).
    tests/fuzz/run.sh 15
    ;;
  *)
    echo "usage: bash tools/setup.sh run [limaoim flags...] | test" >&2
    exit 2
    ;;
esac
