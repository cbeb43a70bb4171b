#!/usr/bin/env bash
# The deployment files without a running systemd: tools/install-service.sh
# staged into a scratch root (twice: idempotent, an edited config kept), the
# unit's ExecStartPre and ExecStart flags through --check-config with the
# staged config, `systemd-analyze verify` of the unit, its system call
# filter against io_uring, the sysctl drop-in against tools/tune/server.sh,
# and shellcheck.
set -euo pipefail

repo=${1:?usage: test_service.sh SOURCE_DIR BUILD_DIR}
build=${2:?usage: test_service.sh SOURCE_DIR BUILD_DIR}
unit="$repo/tools/limaoim.service"
dropin="$repo/tools/99-limaoim.conf"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
check() {
  local description=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'FAIL: %s\n' "$description"
  fi
}
contains() { grep -qF -- "$2" <<<"$1"; }
fails() { ! "$@" >/dev/null 2>&1; }
listed() { grep -qx -- "$1" <<<"$2"; }
unlisted() { ! grep -qx -- "$1" <<<"$2"; }

# ---- install-service.sh --root: staged files, idempotent ----
stage="$work/root"
out=$("$repo/tools/install-service.sh" --root "$stage" --build-dir "$build" 2>&1) || {
  printf '%s\n' "$out"
  exit 1
}
for path in usr/local/bin/limaoim usr/local/bin/limaoim-stat etc/limaoim/limaoim.toml etc/systemd/system/limaoim.service; do
  check "staged $path" test -f "$stage/$path"
done
check "the staged unit is tools/limaoim.service" cmp -s "$unit" "$stage/etc/systemd/system/limaoim.service"
check "the staged config keeps the data under the unit's StateDirectory" \
  grep -qx 'data_dir = "/var/lib/limaoim/data"' "$stage/etc/limaoim/limaoim.toml"
check "the staged config is not world-readable (it may hold http_secret)" \
  test "$(stat -c %a "$stage/etc/limaoim/limaoim.toml")" = 640
printf '\n# edited by the operator\n' >>"$stage/etc/limaoim/limaoim.toml"
out=$("$repo/tools/install-service.sh" --root "$stage" --build-dir "$build" 2>&1)
check "a second run changes nothing" contains "$out" "limaoim.service: unchanged"
check "a second run keeps the binaries" contains "$out" "usr/local/bin/limaoim: unchanged"
check "a second run keeps an edited config" grep -q "edited by the operator" "$stage/etc/limaoim/limaoim.toml"
check "install-service.sh refuses an unknown option" fails "$repo/tools/install-service.sh" --bogus

# ---- the unit's command lines, run against the staged files ----
# The unit's paths, rewritten to the build and the staged config.
localize() {
  sed -e "s|/usr/local/bin/limaoim|$build/limaoim|g" -e "s|/etc/limaoim/|$stage/etc/limaoim/|g" <<<"$1"
}
exec_line() { grep -m1 "^$1=" "$unit" | cut -d= -f2-; }
start_pre=$(exec_line ExecStartPre)
start=$(exec_line ExecStart)
check "ExecStart reads /etc/limaoim/limaoim.toml with -c" test "$start" = "/usr/local/bin/limaoim -c /etc/limaoim/limaoim.toml"
check "ExecStartPre is --check-config of the same file" \
  test "$start_pre" = "/usr/local/bin/limaoim --check-config /etc/limaoim/limaoim.toml"
read -r -a pre_argv <<<"$(localize "$start_pre")"
out=$(env -u LIMAOIM_CONFIG "${pre_argv[@]}" 2>&1) && status=0 || status=$?
check "ExecStartPre passes (exit $status: $out)" test "$status" = 0
check "ExecStartPre says config OK" contains "$out" "config OK: mode release"
read -r -a start_argv <<<"$(localize "${start/ -c / --check-config }")"
out=$(env -u LIMAOIM_CONFIG "${start_argv[@]}" 2>&1) && status=0 || status=$?
check "ExecStart's flags, as --check-config, pass (exit $status: $out)" test "$status" = 0
bad="$work/bad.toml"
printf 'max_con = 5\n' >"$bad"
out=$("$build/limaoim" --check-config "$bad" 2>&1) && status=0 || status=$?
check "--check-config of a bad file exits 2 (got $status)" test "$status" = 2
check "--check-config names the problem" contains "$out" "unknown key 'max_con'"

# ---- systemd-analyze ----
if command -v systemd-analyze >/dev/null; then
  localized="$work/limaoim.service"
  sed -e "s|/usr/local/bin/limaoim|$build/limaoim|g" "$unit" >"$localized"
  out=$(systemd-analyze verify "$localized" 2>&1) && status=0 || status=$?
  check "systemd-analyze verify (exit $status: $out)" test "$status" = 0

  # Every system call io_uring needs is allowed and in no excluded group.
  allowed=$(grep '^SystemCallFilter=[^~]' "$unit" | cut -d= -f2-)
  denied=$(grep '^SystemCallFilter=~' "$unit" | cut -d= -f2- | tr -d '~')
  # System calls of filter items, groups expanded recursively.
  expand() {
    local item
    for item in "$@"; do
      if [[ $item == @* ]]; then
        # shellcheck disable=SC2046 # one word per line of the group's listing
        expand $(systemd-analyze syscall-filter "$item" | tail -n +2 | sed -e 's/^ *//' -e '/^#/d' -e '/^$/d')
      else
        printf '%s\n' "$item"
      fi
    done
  }
  # shellcheck disable=SC2086 # word splitting of the filter lists is wanted
  allowed_calls=$(expand $allowed)
  # shellcheck disable=SC2086
  denied_calls=$(expand $denied)
  check "the groups expand: @system-service holds read" listed read "$allowed_calls"
  check "the groups expand: @privileged holds setuid" listed setuid "$denied_calls"
  for call in io_uring_setup io_uring_enter io_uring_register; do
    check "$call is allowed by SystemCallFilter" listed "$call" "$allowed_calls"
    check "$call is not denied by SystemCallFilter=~" unlisted "$call" "$denied_calls"
  done
  for call in setrlimit prlimit64 fdatasync mmap flock; do
    check "$call (the server needs it) is allowed" listed "$call" "$allowed_calls"
    check "$call (the server needs it) is not denied" unlisted "$call" "$denied_calls"
  done
else
  printf 'skipped: systemd-analyze is not installed (verify and the system call filter)\n'
fi
check "no PrivateDevices= (it would hide the stats segment in a private /dev/shm)" \
  fails grep -q "^PrivateDevices=yes" "$unit"

# ---- the sysctl drop-in and tools/tune/server.sh agree ----
tune_out=$(LIMAOIM_TUNE_SYSCTL_ROOT="$work/no-sysctls" "$repo/tools/tune/server.sh" --check)
floor=0
settings=0
while IFS= read -r line || [ -n "$line" ]; do
  case $line in
    '# at least') floor=1 ;;
    '' | '#'*) ;;
    *=*)
      read -r name <<<"${line%%=*}"
      read -r -a words <<<"${line#*=}"
      wanted="${words[*]}"
      [ "$floor" = 1 ] && wanted=">= $wanted"
      recommended=$(awk -F ' [|] ' -v n="$name" '{ sub(/ +$/, "", $1) } $1 == n { v = $3; sub(/ +$/, "", v); print v }' <<<"$tune_out")
      check "server.sh recommends $name $wanted (got '$recommended')" test "$recommended" = "$wanted"
      settings=$((settings + 1))
      floor=0
      ;;
  esac
done <"$dropin"
rows=$(grep -c ' | ' <<<"$tune_out")
# The table's header and the four nofile rows are not sysctls.
check "server.sh checks exactly the drop-in's $settings settings" test "$rows" = "$((settings + 5))"
nofile=$(grep -m1 '^LimitNOFILE=' "$unit" | cut -d= -f2)
nr_open=$(awk -F ' = ' '$1 == "fs.nr_open" { print $2 }' "$dropin")
check "LimitNOFILE ($nofile) is below the drop-in's fs.nr_open ($nr_open) and the default 1048576" \
  test "$nofile" -lt "$nr_open" -a "$nofile" -le 1048576

if command -v shellcheck >/dev/null; then
  check "shellcheck" shellcheck "$repo/tools/install-service.sh" "$0"
else
  printf 'skipped: shellcheck is not installed\n'
fi

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
