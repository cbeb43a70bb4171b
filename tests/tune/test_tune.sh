#!/usr/bin/env bash
# Tests tools/tune/{server,client}.sh against fake sysctl, etc and state
# trees, runs --check (read-only) against the real /proc/sys, then lints the
# scripts with shellcheck. Never runs --apply or --revert on the real machine.
set -euo pipefail

repo=${1:?usage: test_tune.sh <repo-root>}
tune="$repo/tools/tune"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A sysctl every user, root included, is refused writing (mode 0444 in the
# kernel's table, which root does not bypass): it stands for a setting the
# kernel refuses. access(2) below confirms that without writing anything.
readonly_sysctl=/proc/sys/kernel/random/poolsize

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  printf 'FAIL: %s\n' "$1"
}
expect() {
  local description=$1
  shift
  if "$@"; then pass; else fail "$description"; fi
}
contains() { grep -qF -- "$2" <<<"$1"; }
not_contains() { ! grep -qF -- "$2" <<<"$1"; }
has_line() { grep -qxF -- "$2" <<<"$1"; }
absent() {
  local path
  for path in "$@"; do [ ! -e "$path" ] || return 1; done
}
file_is() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

SYS="" ETC="" STATE=""
OUT="" ERR="" RC=0
# Runs a role script on the fake trees; every --apply and --revert goes
# through here so none can reach the real machine.
run_fake() {
  local role=$1
  shift
  if [ -z "$SYS" ] || [ -z "$ETC" ] || [ -z "$STATE" ]; then
    echo "fake roots not set" >&2
    exit 1
  fi
  RC=0
  OUT=$(LIMAOIM_TUNE_SYSCTL_ROOT=$SYS LIMAOIM_TUNE_ETC_ROOT=$ETC LIMAOIM_TUNE_STATE_DIR=$STATE \
    "$tune/$role.sh" "$@" 2>"$work/stderr") || RC=$?
  ERR=$(cat "$work/stderr")
}

# Column of a table row: 2 current, 3 recommended, 4 status.
column_of() {
  awk -F ' [|] ' -v setting="$1" -v column="$2" \
    '{ sub(/ +$/, "", $1) } $1 == setting { v = $column; sub(/ +$/, "", v); print v }' <<<"$OUT"
}
status_is() { [ "$(column_of "$1" 4)" = "$2" ]; }
current_is() { [ "$(column_of "$1" 2)" = "$2" ]; }
count_status() { awk -F ' [|] ' -v s="$1" '$4 == s' <<<"$OUT" | wc -l; }

put() {
  local path="$1/${2//.//}"
  mkdir -p "$(dirname "$path")"
  printf '%s\n' "$3" >"$path"
}
put_refusing() {
  local path="$1/${2//.//}"
  mkdir -p "$(dirname "$path")"
  ln -s "$readonly_sysctl" "$path"
}

# Values as a stock kernel prints them (tabs included).
make_common_tree() {
  put "$1" fs.nr_open 1048576
  put "$1" fs.file-max 2466165
  put "$1" net.ipv4.tcp_mem $'287898\t383866\t575796'
  put "$1" net.ipv4.tcp_rmem $'4096\t131072\t6291456'
  put "$1" net.ipv4.tcp_wmem $'4096\t16384\t4194304'
  put "$1" net.ipv4.tcp_tw_reuse 2
  put "$1" net.ipv4.tcp_timestamps 1
  put "$1" net.ipv4.ip_forward 0
}

make_etc() {
  mkdir -p "$1/security/limits.d" "$1/sysctl.d"
  printf '# /etc/security/limits.conf\n#*  soft core 0\n*  soft nofile 1024\n' >"$1/security/limits.conf"
  printf 'root - nofile 4096\n' >"$1/security/limits.d/80-other.conf"
  printf 'vm.swappiness = 10\n' >"$1/sysctl.d/10-other.conf"
}

snapshot() {
  (cd "$1" && find . -printf '%p %y %l\n' | sort && find . -type f -exec sha256sum {} + | sort)
}

use_scenario() {
  SYS="$work/$1/sys" ETC="$work/$1/etc" STATE="$work/$1/state"
  mkdir -p "$SYS" "$ETC"
  make_etc "$ETC"
}

server_rows=(fs.nr_open fs.file-max net.netfilter.nf_conntrack_max net.ipv4.tcp_mem
  net.ipv4.tcp_rmem net.ipv4.tcp_wmem net.ipv4.tcp_tw_reuse net.ipv4.tcp_timestamps
  net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.core.netdev_max_backlog
  "nofile soft (*)" "nofile hard (*)" "nofile soft (root)" "nofile hard (root)")
client_rows=(fs.nr_open fs.file-max net.ipv4.ip_local_port_range net.ipv4.tcp_tw_reuse
  net.ipv4.tcp_timestamps net.ipv4.tcp_mem net.ipv4.tcp_rmem net.ipv4.tcp_wmem
  "nofile soft (*)" "nofile hard (*)" "nofile soft (root)" "nofile hard (root)")

has_rows() {
  local row
  for row in "$@"; do
    [ -n "$(column_of "$row" 4)" ] || return 1
  done
}

test_server() {
  use_scenario server
  make_common_tree "$SYS"
  put "$SYS" net.core.somaxconn 4096
  put "$SYS" net.ipv4.tcp_max_syn_backlog 2048
  put_refusing "$SYS" net.core.netdev_max_backlog
  local before
  before=$(snapshot "$work/server")

  run_fake server --check
  expect "server --check exits 0" [ "$RC" = 0 ]
  expect "server --check has header" contains "$OUT" "setting "
  expect "server --check has every row" has_rows "${server_rows[@]}"
  expect "nr_open differs" status_is fs.nr_open differs
  expect "nr_open current shown" current_is fs.nr_open 1048576
  expect "file-max above minimum is ok" status_is fs.file-max ok
  expect "tcp_mem tabs collapsed" current_is net.ipv4.tcp_mem "287898 383866 575796"
  expect "tcp_mem recommendation" [ "$(column_of net.ipv4.tcp_mem 3)" = "786432 2097152 3145728" ]
  expect "somaxconn shown as minimum" [ "$(column_of net.core.somaxconn 3)" = ">= 65535" ]
  expect "timestamps ok" status_is net.ipv4.tcp_timestamps ok
  expect "conntrack unavailable" status_is net.netfilter.nf_conntrack_max unavailable
  expect "conntrack skip reason" contains "$OUT" "net.netfilter.nf_conntrack_max: module not loaded, skipped"
  expect "limits.conf value read" current_is "nofile soft (*)" 1024
  expect "hard * not set" current_is "nofile hard (*)" "not set"
  expect "root '-' line read" current_is "nofile hard (root)" 4096
  expect "tw_recycle said" contains "$OUT" "net.ipv4.tcp_tw_recycle (current absent): removed from Linux 4.12"
  expect "ip_forward explained" contains "$OUT" "net.ipv4.ip_forward (current 0): left as is"
  expect "relogin note with ulimit" contains "$OUT" "log in again (or restart the service) for nofile limits to apply; this shell: ulimit -Hn = $(ulimit -Hn)"
  expect "--check changes nothing" [ "$(snapshot "$work/server")" = "$before" ]

  run_fake server --check --strict
  expect "--check --strict exits 1 when settings differ" [ "$RC" = 1 ]

  put "$SYS" net.netfilter.nf_conntrack_max 262144
  before=$(snapshot "$work/server")

  run_fake server --apply
  expect "server --apply exits 0 despite a refusal" [ "$RC" = 0 ]
  expect "nr_open change printed" contains "$OUT" "fs.nr_open: 1048576 -> 2000000"
  expect "tcp_mem change printed" contains "$OUT" "net.ipv4.tcp_mem: 287898 383866 575796 -> 786432 2097152 3145728"
  expect "conntrack raised" contains "$OUT" "net.netfilter.nf_conntrack_max: 262144 -> 1048576"
  expect "refusal reported" contains "$OUT" "net.core.netdev_max_backlog: refused by the kernel: Permission denied"
  expect "tw_recycle said on apply" contains "$OUT" "removed from Linux 4.12"
  expect "nr_open written" file_is "$SYS/fs/nr_open" 2000000
  expect "tcp_mem written" file_is "$SYS/net/ipv4/tcp_mem" "786432 2097152 3145728"
  expect "rmem written" file_is "$SYS/net/ipv4/tcp_rmem" "4096 4096 16777216"
  expect "tw_reuse written" file_is "$SYS/net/ipv4/tcp_tw_reuse" 1
  expect "somaxconn written" file_is "$SYS/net/core/somaxconn" 65535
  expect "syn backlog written" file_is "$SYS/net/ipv4/tcp_max_syn_backlog" 65535
  expect "larger file-max kept" file_is "$SYS/fs/file-max" 2466165
  expect "ip_forward untouched" file_is "$SYS/net/ipv4/ip_forward" 0
  expect "tw_recycle never created" [ ! -e "$SYS/net/ipv4/tcp_tw_recycle" ]
  local conf="$ETC/sysctl.d/90-limaoim-server.conf" limits="$ETC/security/limits.d/90-limaoim-server.conf"
  local conf_text limits_text
  conf_text=$(cat "$conf" 2>/dev/null || true)
  limits_text=$(cat "$limits" 2>/dev/null || true)
  expect "sysctl.d: nr_open" has_line "$conf_text" "fs.nr_open = 2000000"
  expect "sysctl.d: tcp_wmem" has_line "$conf_text" "net.ipv4.tcp_wmem = 4096 4096 16777216"
  expect "sysctl.d: unchanged exact setting persisted" has_line "$conf_text" "net.ipv4.tcp_timestamps = 1"
  expect "sysctl.d: larger file-max not pinned" not_contains "$conf_text" "fs.file-max ="
  expect "sysctl.d: refused setting commented" contains "$conf_text" "# net.core.netdev_max_backlog = 16384 was refused"
  expect "sysctl.d: no ip_forward" not_contains "$conf_text" "ip_forward"
  local line
  for line in "*    soft nofile 1000000" "*    hard nofile 1000000" "root soft nofile 1000000" "root hard nofile 1000000"; do
    expect "limits.d: $line" has_line "$limits_text" "$line"
  done
  local state_file="$STATE/server.previous"
  expect "previous tcp_mem recorded as read" grep -qF $'sysctl\tnet.ipv4.tcp_mem\t287898\t383866\t575796' "$state_file"
  expect "unchanged setting not recorded" not_contains "$(cat "$state_file")" "tcp_timestamps"

  run_fake server --check
  expect "check after apply exits 0" [ "$RC" = 0 ]
  expect "only the refused setting differs" [ "$(count_status differs)" = 1 ]
  expect "refused one is the one differing" status_is net.core.netdev_max_backlog differs
  expect "all others ok" [ "$(count_status ok)" = $((${#server_rows[@]} - 1)) ]
  expect "root nofile from our file wins over 80-other" current_is "nofile hard (root)" 1000000

  local state_before
  state_before=$(cat "$state_file")
  run_fake server --apply
  expect "second --apply exits 0" [ "$RC" = 0 ]
  expect "second --apply keeps the first record" [ "$(cat "$state_file")" = "$state_before" ]

  run_fake server --revert
  expect "server --revert exits 0" [ "$RC" = 0 ]
  expect "revert prints restores" contains "$OUT" "fs.nr_open: 2000000 -> 1048576"
  expect "revert removes files" absent "$conf" "$limits" "$state_file"
  expect "revert restores everything byte for byte" [ "$(snapshot "$work/server")" = "$before" ]

  run_fake server --revert
  expect "second --revert exits 0" [ "$RC" = 0 ]
  expect "second --revert says nothing to revert" contains "$OUT" "nothing to revert"

  # The state must be written before anything changes: with the state
  # directory impossible to create, nothing may change.
  local real_state=$STATE
  STATE="$work/server/state-is-a-file"
  : >"$STATE"
  before=$(snapshot "$work/server")
  run_fake server --apply
  expect "apply without a state directory fails" [ "$RC" != 0 ]
  expect "apply without a state directory says why" contains "$ERR" "cannot create"
  expect "apply without a state directory changes nothing" [ "$(snapshot "$work/server")" = "$before" ]
  rm -f "$STATE"
  STATE=$real_state
}

test_client() {
  use_scenario client
  make_common_tree "$SYS"
  put "$SYS" net.ipv4.ip_local_port_range $'32768\t60999'
  local before
  before=$(snapshot "$work/client")

  run_fake client --check
  expect "client --check exits 0" [ "$RC" = 0 ]
  expect "client --check has every row" has_rows "${client_rows[@]}"
  expect "port range differs" status_is net.ipv4.ip_local_port_range differs
  expect "no conntrack row for client" [ -z "$(column_of net.netfilter.nf_conntrack_max 4)" ]
  expect "no ip_forward note for client" not_contains "$OUT" "ip_forward"
  expect "client tw_recycle said" contains "$OUT" "removed from Linux 4.12"
  expect "client --check changes nothing" [ "$(snapshot "$work/client")" = "$before" ]

  run_fake client --apply
  expect "client --apply exits 0" [ "$RC" = 0 ]
  expect "port range change printed" contains "$OUT" "net.ipv4.ip_local_port_range: 32768 60999 -> 1024 65535"
  expect "port range written" file_is "$SYS/net/ipv4/ip_local_port_range" "1024 65535"
  expect "client sysctl.d written" grep -qx "net.ipv4.ip_local_port_range = 1024 65535" "$ETC/sysctl.d/90-limaoim-client.conf"
  expect "client limits.d written" grep -q "hard nofile 1000000" "$ETC/security/limits.d/90-limaoim-client.conf"
  expect "other files kept" [ -f "$ETC/sysctl.d/10-other.conf" ]

  run_fake client --check --strict
  expect "client --check --strict exits 0 once tuned" [ "$RC" = 0 ]
  expect "client all ok" [ "$(count_status ok)" = ${#client_rows[@]} ]

  run_fake client --revert
  expect "client --revert exits 0" [ "$RC" = 0 ]
  expect "client revert restores everything byte for byte" [ "$(snapshot "$work/client")" = "$before" ]
}

# A read-only /proc/sys (as in a container): every write refused.
test_everything_refused() {
  use_scenario refused
  local row
  for row in "${client_rows[@]}"; do
    case $row in nofile*) ;; *) put_refusing "$SYS" "$row" ;; esac
  done
  run_fake client --apply
  expect "all refused: exits 1" [ "$RC" = 1 ]
  expect "all refused: says so" contains "$ERR" "nothing could be applied"
  expect "all refused: each reported" [ "$(grep -c 'refused by the kernel: Permission denied' <<<"$OUT")" = 8 ]
  run_fake client --revert
  expect "all refused: revert exits 0" [ "$RC" = 0 ]
  expect "all refused: revert restores nothing" contains "$OUT" "fs.nr_open: already"
  expect "all refused: revert removes files" [ ! -e "$ETC/sysctl.d/90-limaoim-client.conf" ]
}

test_options() {
  use_scenario options
  local role
  for role in server client; do
    run_fake "$role" --bogus
    expect "$role unknown option exits 2" [ "$RC" = 2 ]
    expect "$role unknown option named" contains "$ERR" "unknown option: --bogus"
    expect "$role unknown option shows usage" contains "$ERR" "usage: $role.sh"
    run_fake "$role"
    expect "$role without mode exits 2" [ "$RC" = 2 ]
    run_fake "$role" --check --apply
    expect "$role two modes exit 2" [ "$RC" = 2 ]
    run_fake "$role" --apply --strict
    expect "$role --strict without --check exits 2" [ "$RC" = 2 ]
    run_fake "$role" --help
    expect "$role --help exits 0" [ "$RC" = 0 ]
    expect "$role --help prints usage" contains "$OUT" "--revert"
  done
  expect "options changed nothing" [ ! -e "$STATE" ]
}

# Real machine, read-only: the managed files, our outputs and the state
# directory must be exactly as before.
real_snapshot() {
  local row
  for row in "${server_rows[@]}" "${client_rows[@]}" net.ipv4.ip_forward; do
    case $row in nofile*) ;; *) cat "/proc/sys/${row//.//}" 2>/dev/null || echo "absent $row" ;; esac
  done
  ls -d /etc/sysctl.d/90-limaoim-* /etc/security/limits.d/90-limaoim-* /var/lib/limaoim-tune 2>/dev/null || true
}

test_real_check() {
  local role before
  for role in server client; do
    local -n rows="${role}_rows"
    before=$(real_snapshot)
    RC=0
    OUT=$(env -u LIMAOIM_TUNE_SYSCTL_ROOT -u LIMAOIM_TUNE_ETC_ROOT -u LIMAOIM_TUNE_STATE_DIR \
      "$tune/$role.sh" --check) || RC=$?
    expect "real $role --check exits 0" [ "$RC" = 0 ]
    expect "real $role --check reads /proc/sys" contains "$OUT" "sysctl root /proc/sys"
    expect "real $role --check has every row" has_rows "${rows[@]}"
    expect "real $role file-max read" is_number "$(column_of fs.file-max 2)"
    expect "real $role --check changed nothing" [ "$(real_snapshot)" = "$before" ]
  done
}
is_number() { [[ $1 =~ ^[0-9]+$ ]]; }

test_shellcheck() {
  if ! command -v shellcheck >/dev/null; then
    echo "shellcheck not installed: skipped"
    return
  fi
  expect "shellcheck clean" shellcheck -x "$tune"/*.sh "${BASH_SOURCE[0]}"
}

if [ -w "$readonly_sysctl" ] || [ ! -r "$readonly_sysctl" ]; then
  echo "$readonly_sysctl must be readable and refuse writes; cannot run" >&2
  exit 1
fi
test_server
test_client
test_everything_refused
test_options
test_real_check
test_shellcheck

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
