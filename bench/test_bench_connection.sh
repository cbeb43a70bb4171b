#!/usr/bin/env bash
# Tests of bench_connection that need network namespaces (run as root by
# `meson test bench-connection`; exits 77, skipped, otherwise):
#
#   - which -hostname it accepts: loopback, its own addresses, the subnet of
#     a veth interface (a namespace of this machine); not the subnet of any
#     other interface, not another subnet;
#   - -client-keys against the real server, v4 and v3, and the flag's bounds;
#   - -dialect wukongim (WKProto v5 and v3) against the real server's WKProto
#     listener, and the -dialect/-version bounds;
#   - the CONNACK checks with and without -client-keys, against a fake
#     server (python3) that answers every CONNECT with a chosen CONNACK;
#   - the storm mode (-storm-cids) against the real server, its flags, and
#     its reset counting and -retry-ms against a fake server that resets
#     every connection;
#   - shellcheck over the bench scripts and tools/setup.sh.
#
#   bench/test_bench_connection.sh BUILD_DIR
#
# Everything runs in two namespaces of its own (lmo-t<pid>-s for the server,
# lmo-t<pid>-c for the clients, one veth pair between them), removed on exit.
set -euo pipefail

build_dir=${1:?usage: test_bench_connection.sh BUILD_DIR}
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly build_dir script_dir
readonly bench_bin="$build_dir/bench_connection" server_bin="$build_dir/limaoim"
readonly server_ns="lmo-t$$-s" client_ns="lmo-t$$-c" instance="bench-test-$$" port=6666 wk_port=6668
readonly listen_wait_seconds=20 fake_port=6700

if ((EUID != 0)); then
    echo "not root: cannot create network namespaces, skipped"
    exit 77
fi
for binary in "$bench_bin" "$server_bin"; do
    [[ -x "$binary" ]] || { echo "$binary is missing" >&2; exit 1; }
done

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    printf 'FAIL: %s\n' "$1"
}

work=$(mktemp -d)
server_pid=""
fake_pid=""
namespaces=()
cleanup() {
    if [[ -n "$fake_pid" ]]; then stop_fake_server; fi
    if [[ -n "$server_pid" && -d /proc/$server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        local status=0
        wait "$server_pid" 2>/dev/null || status=$?
        ((status == 0)) || echo "the server exited with status $status after SIGTERM" >&2
    fi
    local name
    for name in "${namespaces[@]}"; do ip netns delete "$name" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_server() { ip netns exec "$server_ns" "$@"; }
in_client() { ip netns exec "$client_ns" "$@"; }

# Server side 10.202.0.1/24, client side 10.202.0.2/24 and 10.202.0.3/24; the
# client namespace's loopback also gets 10.203.0.2/24: a subnet that is not
# on a veth.
setup_namespaces() {
    ip netns add "$server_ns"
    namespaces+=("$server_ns")
    ip netns add "$client_ns"
    namespaces+=("$client_ns")
    ip link add lmo-c netns "$server_ns" type veth peer name lmo-s netns "$client_ns"
    in_server ip link set lo up
    in_server ip link set lmo-c up
    in_server ip addr add 10.202.0.1/24 dev lmo-c
    in_client ip link set lo up
    in_client ip link set lmo-s up
    in_client ip addr add 10.202.0.2/24 dev lmo-s
    in_client ip addr add 10.202.0.3/24 dev lmo-s
    in_client ip addr add 10.203.0.2/24 dev lo
}

# -hostname is checked while the flags are parsed, before -help is seen:
# status 0 means accepted, 2 refused.
hostname_status() {
    local status=0
    in_client "$bench_bin" -hostname "$1" -help >/dev/null 2>"$work/hostname.err" || status=$?
    echo "$status"
}

expect_hostname() {
    local address=$1 expected=$2 why=$3 status
    status=$(hostname_status "$address")
    if [[ "$status" == "$expected" ]]; then pass; else fail "-hostname $address: status $status, expected $expected ($why)"; fi
}

test_hostname_rule() {
    expect_hostname 10.202.0.1 0 "on the subnet of a veth: the server namespace"
    expect_hostname 10.202.0.200 0 "on the subnet of a veth"
    expect_hostname 10.202.0.2 0 "an own address"
    expect_hostname 127.0.0.1 0 "loopback"
    expect_hostname 10.203.0.2 0 "an own address (on lo)"
    expect_hostname 10.203.0.1 2 "the subnet of lo, not of a veth"
    expect_hostname 10.202.1.1 2 "next to the veth subnet, not on it"
    expect_hostname 192.0.2.1 2 "no interface of the client namespace has this subnet"
    grep -q 'veth' "$work/hostname.err" || fail "the refusal names the veth rule: $(cat "$work/hostname.err")"
    # Sources must be addresses of the namespace itself, veth or not.
    local status=0
    in_client "$bench_bin" -srcs 10.202.0.1 -help >/dev/null 2>&1 || status=$?
    if [[ "$status" == 2 ]]; then pass; else fail "-srcs 10.202.0.1 (the peer's address): status $status, expected 2"; fi
}

test_client_keys_flag() {
    local value status
    for value in 65537 -1 x ""; do
        status=0
        "$bench_bin" -cids 1-2 -client-keys "$value" >/dev/null 2>&1 || status=$?
        if [[ "$status" == 2 ]]; then pass; else fail "-client-keys '$value': status $status, expected 2"; fi
    done
    # Read whole before grep: `bench -help | grep -q` fails under pipefail when
    # grep exits at its match while the help is still being written (SIGPIPE).
    local help
    help=$("$bench_bin" -help)
    if grep -q -- '-client-keys N' <<<"$help"; then pass; else fail "-help lists -client-keys"; fi
}

# Waits until something listens on PORT in the server namespace, for at most
# listen_wait_seconds; while it waits, PID (when given) must stay alive.
wait_listening() {
    local tcp_port=$1 pid=${2:-} waited
    for ((waited = 0; waited < listen_wait_seconds * 10; waited++)); do
        [[ -z "$pid" || -d /proc/$pid ]] || return 1
        in_server ss -Hltn "sport = :$tcp_port" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

start_server() {
    # Not through in_server: a function in the background is a subshell,
    # whose pid is not the server's.
    ip netns exec "$server_ns" "$server_bin" --mode test --addr 0.0.0.0 --port "$port" --instance "$instance" \
        --http-addr '' --ws-addr '' --wk-addr "0.0.0.0:$wk_port" --data-dir "$work/data" --max-conns 10000 --workers 2 >"$work/server.log" 2>&1 &
    server_pid=$!
    wait_listening "$port" "$server_pid" && wait_listening "$wk_port" "$server_pid" && return 0
    echo "the server did not listen within ${listen_wait_seconds}s:" >&2
    cat "$work/server.log" >&2
    return 1
}

# Runs bench_connection in the client namespace against the server's veth
# address; expects exit status 0 and the given text in its output.
expect_run() {
    local description=$1 expected_text=$2
    shift 2
    local status=0
    in_client "$bench_bin" -hostname 10.202.0.1 -port "$port" -srcs 10.202.0.2-10.202.0.3 -quiet "$@" \
        >"$work/run.log" 2>&1 || status=$?
    if [[ "$status" == 0 ]] && grep -qF -- "$expected_text" "$work/run.log"; then
        pass
    else
        fail "$description: status $status; output:"
        sed 's/^/    /' "$work/run.log"
    fi
}

test_client_keys_runs() {
    expect_run "v4, -client-keys 4" "4 pre-made client keys per worker" \
        -cids 1-2000 -client-keys 4 -procs 2 -timeout 3s -heartbeat 1s -version 4
    expect_run "v3, -client-keys 4" "all 2000 clients online" \
        -cids 2001-4000 -client-keys 4 -timeout 3s -heartbeat 1s -version 3
    expect_run "v4, own key pair per client (-client-keys 0)" "all 2000 clients online" \
        -cids 4001-6000 -timeout 3s -heartbeat 1s -version 4
    # A server that stops before the clients connect: refused, exit 1.
    local status=0
    in_client "$bench_bin" -hostname 10.202.0.1 -port $((port + 1)) -cids 1-10 -client-keys 2 -timeout 2s -quiet \
        >"$work/refused.log" 2>&1 || status=$?
    if [[ "$status" == 1 ]] && grep -q 'refused=10' "$work/refused.log"; then pass; else
        fail "no server: status $status, expected 1 with refused=10: $(cat "$work/refused.log")"
    fi
}

# A fake server on the given port that answers each CONNECT with a v4 CONNACK
# of reason 1 carrying the given server key (base64 of the given hex bytes,
# or the text itself when it is not hex) and salt, then holds the
# connection. Sets fake_pid.
start_fake_server() {
    local listen_port=$1 key=$2 salt=$3
    ip netns exec "$server_ns" python3 -c '
import base64, socket, struct, sys, threading
port, key, salt = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
try:
    key = base64.b64encode(bytes.fromhex(key))
except ValueError:
    key = key.encode()
string = lambda b: struct.pack(">H", len(b)) + b
body = string(key) + string(salt) + struct.pack(">qB", 0, 1)
connack = bytes([0x20, len(body)]) + body
def serve(connection):
    connection.recv(4096)  # the CONNECT, small and sent in one piece
    connection.sendall(connack)
    while connection.recv(4096):
        pass
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", port))
listener.listen(64)
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
' "$listen_port" "$key" "$salt" &
    fake_pid=$!
    wait_listening "$listen_port" && return 0
    echo "the fake server did not listen" >&2
    return 1
}

# A fake server on the given port that resets every connection it accepts
# (SO_LINGER 0, then close). Sets fake_pid.
start_resetting_server() {
    local listen_port=$1
    ip netns exec "$server_ns" python3 -c '
import socket, struct, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", int(sys.argv[1])))
listener.listen(64)
while True:
    connection = listener.accept()[0]
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
' "$listen_port" &
    fake_pid=$!
    wait_listening "$listen_port" && return 0
    echo "the resetting fake server did not listen" >&2
    return 1
}

stop_fake_server() {
    kill "$fake_pid" 2>/dev/null || true
    wait "$fake_pid" 2>/dev/null || true
    fake_pid=""
}

# Runs 3 v4 clients against the fake server; expects the exit status and
# the given text in the summary.
expect_fake() {
    local description=$1 expected_status=$2 expected_text=$3
    shift 3
    local status=0
    in_client "$bench_bin" -hostname 10.202.0.1 -port "$fake_port" -cids 1-3 -timeout 2s -heartbeat 10s \
        -connect-timeout 1s -quiet "$@" >"$work/fake.log" 2>&1 || status=$?
    if [[ "$status" == "$expected_status" ]] && grep -qF -- "$expected_text" "$work/fake.log"; then
        pass
    else
        fail "$description: status $status (expected $expected_status), '$expected_text' not found:"
        sed 's/^/    /' "$work/fake.log"
    fi
}

test_connack_checks() {
    local good_key zero_key=""
    good_key=$(printf '%064d' 9)  # 31 zero bytes then 09: not a low-order point
    printf -v zero_key '%064d' 0  # all zero: the shared secret is all zero
    local salt=0123456789abcdef

    start_fake_server "$fake_port" "$good_key" "$salt"
    expect_fake "good CONNACK" 0 "all 3 clients online"
    expect_fake "good CONNACK, -client-keys 2" 0 "all 3 clients online" -client-keys 2
    stop_fake_server

    start_fake_server "$fake_port" "${good_key:2}" "$salt"
    expect_fake "31-byte server key" 1 "bad_connack=3"
    expect_fake "31-byte server key, -client-keys 2" 1 "bad_connack=3" -client-keys 2
    stop_fake_server

    start_fake_server "$fake_port" "not base64!" "$salt"
    expect_fake "server key not base64, -client-keys 2" 1 "bad_connack=3" -client-keys 2
    stop_fake_server

    start_fake_server "$fake_port" "$good_key" "${salt:1}"
    expect_fake "15-byte salt" 1 "bad_connack=3"
    expect_fake "15-byte salt, -client-keys 2" 1 "bad_connack=3" -client-keys 2
    stop_fake_server

    # Only a client that derives the shared secret can see that it is zero.
    start_fake_server "$fake_port" "$zero_key" "$salt"
    expect_fake "low-order server key" 1 "bad_connack=3"
    expect_fake "low-order server key, -client-keys 2 (no shared secret)" 0 "all 3 clients online" -client-keys 2
    stop_fake_server
}

# WKProto clients: CONNECT in WKProto's field order, the v5 CONNACK (server
# version byte, node_id) decoded through the dialect; v3 has neither.
test_wukongim_runs() {
    expect_run "wukongim v5" "all 1000 clients online" \
        -cids 7001-8000 -client-keys 4 -timeout 3s -heartbeat 1s -dialect wukongim -version 5 -port "$wk_port"
    expect_run "wukongim v3, own key pair per client" "all 1000 clients online" \
        -cids 8001-9000 -timeout 3s -heartbeat 1s -dialect wukongim -version 3 -port "$wk_port"
    grep -qF "wukongim version 3" "$work/run.log" || fail "the summary names the dialect: $(cat "$work/run.log")"
    # A LiMaoIM CONNECT on the WKProto port is not a login.
    local status=0
    in_client "$bench_bin" -hostname 10.202.0.1 -port "$wk_port" -cids 1-10 -client-keys 2 -timeout 2s -quiet \
        >"$work/mismatch.log" 2>&1 || status=$?
    if [[ "$status" == 1 ]]; then pass; else fail "limaoim clients on the WKProto port: status $status, expected 1"; fi
}

test_dialect_flag() {
    local args status
    for args in "-dialect wukong" "-dialect limaoim -version 5" "-version 6 -dialect wukongim"; do
        status=0
        # shellcheck disable=SC2086  # the flags are split on purpose
        "$bench_bin" -cids 1-2 -timeout 1s $args >/dev/null 2>&1 || status=$?
        if [[ "$status" == 2 ]]; then pass; else fail "$args: status $status, expected 2"; fi
    done
}

test_storm_flags() {
    local status
    local bad
    for bad in "-storm-cids 5-20" "-storm-cids 20-5" "-storm-hold 5s" "-storm-rate x" "-retry-ms 600001" "-max-inflight -1"; do
        status=0
        # shellcheck disable=SC2086 # each case is a flag and its value
        "$bench_bin" -cids 1-10 $bad >/dev/null 2>&1 || status=$?
        if [[ "$status" == 2 ]]; then pass; else fail "-cids 1-10 $bad: status $status, expected 2"; fi
    done
    local help
    help=$("$bench_bin" -help)
    if grep -q -- '-storm-cids A-B' <<<"$help"; then pass; else fail "-help lists -storm-cids"; fi
}

# 300 established clients, then a storm of 1,500 at 3,000/s, 1 s heartbeats:
# PASS, with the storm's lines in the summary and its CSV columns.
test_storm_run() {
    local status=0
    in_client "$bench_bin" -hostname 10.202.0.1 -port "$port" -srcs 10.202.0.2-10.202.0.3 -cids 1-300 -rate 1000 \
        -storm-cids 1001-2500 -storm-rate 3000 -storm-delay 1s -storm-hold 3s -heartbeat 1s -client-keys 4 -procs 2 \
        -timeout 30s -report "$work/storm.csv" >"$work/storm.log" 2>&1 || status=$?
    if [[ "$status" == 0 ]] && grep -q '^  storm: 1500 clients (cids 1001-2500) at 3000/s' "$work/storm.log" &&
        grep -q '^  established: 300 online when the storm began, 300 at the end; lost 0' "$work/storm.log" &&
        grep -q '^verdict: PASS' "$work/storm.log" && grep -q ' storm offered=' "$work/storm.log"; then
        pass
    else
        fail "storm run: status $status; output:"
        sed 's/^/    /' "$work/storm.log"
    fi
    # Phases 0, 1 and 2 all appear; every storm client was offered once.
    if awk -F, 'NR > 1 { seen[$11] = 1; offered += $12 } END { exit !(seen[0] && seen[1] && seen[2] && offered == 1800) }' \
        "$work/storm.csv"; then pass; else fail "storm CSV: phases or offered count wrong: $(cat "$work/storm.csv")"; fi
}

# Against a server that resets every connection: resets are counted before
# the CONNACK, the storm still starts (the established clients gave up), the
# verdict fails; with -retry-ms the resets are retried.
test_storm_resets() {
    local status=0
    start_resetting_server "$fake_port"
    in_client "$bench_bin" -hostname 10.202.0.1 -port "$fake_port" -cids 1-3 -storm-cids 11-17 -storm-rate 100 \
        -storm-delay 0 -storm-hold 1s -timeout 10s -quiet >"$work/resets.log" 2>&1 || status=$?
    if [[ "$status" == 1 ]] && grep -q 'failed=10 (reset=10)' "$work/resets.log" &&
        grep -q 'connects reset or refused before their CONNACK' "$work/resets.log"; then
        pass
    else
        fail "storm against a resetting server: status $status; output:"
        sed 's/^/    /' "$work/resets.log"
    fi
    status=0
    in_client "$bench_bin" -hostname 10.202.0.1 -port "$fake_port" -cids 1-3 -retry-ms 100 -timeout 2s -quiet \
        >"$work/retry.log" 2>&1 || status=$?
    local retries
    retries=$(grep -o 'retries=[0-9]*' "$work/retry.log" | cut -d= -f2)
    if [[ "$status" == 1 && "${retries:-0}" -ge 6 ]] && grep -q 'gave_up=0' "$work/retry.log"; then
        pass
    else
        fail "-retry-ms 100 against a resetting server: status $status, retries ${retries:-none}; output:"
        sed 's/^/    /' "$work/retry.log"
    fi
    stop_fake_server
}

test_server_stops() {
    local status=0
    kill -TERM "$server_pid"
    wait "$server_pid" || status=$?
    server_pid=""
    if [[ "$status" == 0 ]]; then pass; else fail "server exit status after SIGTERM: $status"; fi
}

test_shellcheck() {
    if ! command -v shellcheck >/dev/null; then
        echo "shellcheck not installed: skipped"
        return
    fi
    if shellcheck -x "$script_dir"/*.sh "$script_dir/../tools/setup.sh"; then pass; else fail "shellcheck over bench/*.sh and tools/setup.sh"; fi
}

setup_namespaces
test_hostname_rule
test_client_keys_flag
test_dialect_flag
start_server
test_client_keys_runs
test_wukongim_runs
test_storm_flags
test_storm_run
test_server_stops
test_storm_resets
test_connack_checks
test_shellcheck

printf '%d passed, %d failed\n' "$passed" "$failed"
[[ "$failed" == 0 ]]
