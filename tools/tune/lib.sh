# shellcheck shell=bash
# Shared engine of server.sh and client.sh. A role script declares
#   SYSCTLS          "name kind value" entries; kind "exact" wants the value as
#                    written, kind "min" wants at least the value and never
#                    lowers a larger one (the kernel may size it from RAM).
#   IGNORED_SYSCTLS  "name|reason" entries that are reported, never written
#                    (append to the list defined here).
# after sourcing this file, then calls tune_main <role> "$@".

# Fixed collation and messages: limits.d is read in C order like glob(3)
# sorts it for pam_limits, and error texts stay comparable.
export LC_ALL=C

SYSCTL_ROOT=${LIMAOIM_TUNE_SYSCTL_ROOT:-/proc/sys}
ETC_ROOT=${LIMAOIM_TUNE_ETC_ROOT:-/etc}
STATE_DIR=${LIMAOIM_TUNE_STATE_DIR:-/var/lib/limaoim-tune}

# Below fs.nr_open's default (1048576), so a login never fails on setrlimit
# even when raising fs.nr_open was refused.
NOFILE_LIMIT=1000000
LIMIT_DOMAINS=('*' root)
LIMIT_TYPES=(soft hard)

# Both roles report tcp_tw_recycle so nobody copies it from old guides.
IGNORED_SYSCTLS=(
  "net.ipv4.tcp_tw_recycle|removed from Linux 4.12 (it dropped connections from clients behind NAT); skipped, never set"
)

ROLE=""
STATE_FILE=""
SYSCTL_CONF=""
LIMITS_CONF=""

die() {
  printf '%s: %s\n' "$ROLE" "$1" >&2
  exit 1
}

usage() {
  cat <<EOF
usage: $ROLE.sh --check [--strict] | --apply | --revert | --help

Kernel settings for the limaoim $ROLE (see tools/tune/README.md).
  --check    show setting | current | recommended | status; changes nothing.
             Exit 0, or 1 with --strict when a setting differs.
  --apply    record current values in $STATE_FILE,
             set the recommended ones through $SYSCTL_ROOT, write
             $SYSCTL_CONF and
             $LIMITS_CONF.
  --revert   restore the recorded values and remove those files.

Environment (for tests): LIMAOIM_TUNE_SYSCTL_ROOT (default /proc/sys),
LIMAOIM_TUNE_ETC_ROOT (default /etc), LIMAOIM_TUNE_STATE_DIR
(default /var/lib/limaoim-tune).
EOF
}

usage_error() {
  printf '%s: %s\n' "$ROLE" "$1" >&2
  usage >&2
  exit 2
}

sysctl_path() {
  printf '%s/%s\n' "$SYSCTL_ROOT" "${1//.//}"
}

# Values are compared with runs of blanks collapsed: the kernel prints
# tcp_mem with tabs, people write it with spaces.
normalize() {
  local -a words
  read -r -a words <<<"$1"
  printf '%s' "${words[*]}"
}

is_count() {
  [[ $1 =~ ^[0-9]+$ ]]
}

# Sets RAW (first line as stored, kept for an exact revert), CURRENT (for
# display) and STATUS: ok, differs, unavailable (absent) or unreadable.
evaluate_sysctl() {
  local name=$1 kind=$2 wanted=$3 path line=""
  path=$(sysctl_path "$name")
  RAW=""
  if [ ! -e "$path" ]; then
    CURRENT=absent STATUS=unavailable
    return
  fi
  if ! { IFS= read -r line || [ -n "$line" ]; } 2>/dev/null <"$path"; then
    CURRENT=unreadable STATUS=unreadable
    return
  fi
  RAW=$line
  CURRENT=$(normalize "$line")
  if satisfies "$kind" "$CURRENT" "$wanted"; then STATUS=ok; else STATUS=differs; fi
}

satisfies() {
  local kind=$1 current=$2 wanted=$3
  case $kind in
    exact) [ "$current" = "$wanted" ] ;;
    min) is_count "$current" && ((10#$current >= 10#$wanted)) ;;
    *) die "internal: unknown kind '$kind'" ;;
  esac
}

shown_recommendation() {
  if [ "$1" = min ]; then printf '>= %s' "$2"; else printf '%s' "$2"; fi
}

absent_reason() {
  case $1 in
    net.netfilter.*) printf 'module not loaded, skipped' ;;
    *) printf 'not present in this kernel, skipped' ;;
  esac
}

# Effective nofile limit of a pam_limits domain: limits.conf, then
# limits.d/*.conf in order, a later line for the same domain wins.
configured_nofile() {
  local domain=$1 type=$2 value="not set" file line_domain line_type item limit
  local -a files=()
  [ -f "$ETC_ROOT/security/limits.conf" ] && files+=("$ETC_ROOT/security/limits.conf")
  for file in "$ETC_ROOT"/security/limits.d/*.conf; do
    [ -f "$file" ] && files+=("$file")
  done
  for file in "${files[@]}"; do
    while read -r line_domain line_type item limit _; do
      if [ "$line_domain" = "$domain" ] && [ "$item" = nofile ] &&
        { [ "$line_type" = "$type" ] || [ "$line_type" = - ]; }; then
        value=$limit
      fi
    done <"$file"
  done
  printf '%s' "$value"
}

print_row() {
  printf '%-32s | %-24s | %-24s | %s\n' "$1" "$2" "$3" "$4"
}

print_notes() {
  local entry name reason
  for entry in "${IGNORED_SYSCTLS[@]}"; do
    name=${entry%%|*} reason=${entry#*|}
    evaluate_sysctl "$name" exact ""
    printf 'note: %s (current %s): %s\n' "$name" "$CURRENT" "$reason"
  done
  printf 'note: nofile: log in again (or restart the service) for nofile limits to apply; this shell: ulimit -Hn = %s\n' "$(ulimit -Hn)"
}

check() {
  local strict=$1 entry name kind wanted differing=0 domain type value
  local -a absent=()
  printf 'limaoim %s kernel settings (sysctl root %s, etc root %s)\n' "$ROLE" "$SYSCTL_ROOT" "$ETC_ROOT"
  print_row setting current recommended status
  for entry in "${SYSCTLS[@]}"; do
    read -r name kind wanted <<<"$entry"
    evaluate_sysctl "$name" "$kind" "$wanted"
    case $STATUS in
      differs) differing=$((differing + 1)) ;;
      unavailable) absent+=("$name") ;;
      unreadable) STATUS=unavailable ;;
    esac
    print_row "$name" "$CURRENT" "$(shown_recommendation "$kind" "$wanted")" "$STATUS"
  done
  for domain in "${LIMIT_DOMAINS[@]}"; do
    for type in "${LIMIT_TYPES[@]}"; do
      value=$(configured_nofile "$domain" "$type")
      STATUS=ok
      satisfies min "$value" "$NOFILE_LIMIT" || { STATUS=differs; differing=$((differing + 1)); }
      print_row "nofile $type ($domain)" "$value" ">= $NOFILE_LIMIT" "$STATUS"
    done
  done
  for name in "${absent[@]}"; do
    printf 'note: %s: %s\n' "$name" "$(absent_reason "$name")"
  done
  print_notes
  if [ "$strict" = 1 ] && [ "$differing" -gt 0 ]; then
    printf '%s setting(s) differ\n' "$differing"
    return 1
  fi
  return 0
}

state_has() {
  local kind=$1 name=$2 line_kind line_name _value
  [ -f "$STATE_FILE" ] || return 1
  while IFS=$'\t' read -r line_kind line_name _value; do
    [ "$line_kind" = "$kind" ] && [ "$line_name" = "$name" ] && return 0
  done <"$STATE_FILE"
  return 1
}

# A later --apply keeps the values recorded by the first one, so --revert
# always returns to the machine as it was before any tuning.
record_previous() {
  local tmp entry name raw path
  mkdir -p "$STATE_DIR" 2>/dev/null || die "cannot create $STATE_DIR (run as root?)"
  tmp="$STATE_FILE.tmp.$$"
  {
    if [ -f "$STATE_FILE" ]; then
      cat "$STATE_FILE"
    else
      printf '# limaoim %s: values before --apply; used by --revert\n' "$ROLE"
    fi
    for entry in "$@"; do
      name=${entry%%|*} raw=${entry#*|}
      state_has sysctl "$name" || printf 'sysctl\t%s\t%s\n' "$name" "$raw"
    done
    for path in "$SYSCTL_CONF" "$LIMITS_CONF"; do
      state_has file "$path" || printf 'file\t%s\n' "$path"
    done
  } >"$tmp" 2>/dev/null || { rm -f "$tmp"; die "cannot write $STATE_FILE (run as root?)"; }
  mv "$tmp" "$STATE_FILE"
}

# Sets WRITE_ERROR to the system's reason when the write fails.
write_sysctl() {
  local path=$1 value=$2 error
  if error=$({ printf '%s\n' "$value" >"$path"; } 2>&1); then
    return 0
  fi
  WRITE_ERROR=${error##*: }
  return 1
}

install_file() {
  local path=$1 tmp
  mkdir -p "$(dirname "$path")" 2>/dev/null || die "cannot create $(dirname "$path")"
  tmp="$path.tmp.$$"
  cat >"$tmp" 2>/dev/null || { rm -f "$tmp"; die "cannot write $path"; }
  mv "$tmp" "$path"
  printf 'wrote %s\n' "$path"
}

limits_conf_text() {
  local domain type
  printf '# written by tools/tune/%s.sh --apply; removed by --revert\n' "$ROLE"
  printf '# "*" does not cover root for pam_limits, hence the root lines.\n'
  for domain in "${LIMIT_DOMAINS[@]}"; do
    for type in "${LIMIT_TYPES[@]}"; do
      printf '%-4s %s nofile %s\n' "$domain" "$type" "$NOFILE_LIMIT"
    done
  done
}

apply() {
  local entry name kind wanted attempted=0 applied=0 already=0
  local -a pending=() previous=() conf=()
  for entry in "${SYSCTLS[@]}"; do
    read -r name kind wanted <<<"$entry"
    evaluate_sysctl "$name" "$kind" "$wanted"
    case $STATUS in
      differs)
        pending+=("$name|$kind|$wanted|$CURRENT")
        previous+=("$name|$RAW")
        ;;
      ok)
        already=$((already + 1))
        conf+=("$(conf_line_for_ok "$name" "$kind" "$wanted")")
        ;;
      unavailable)
        printf '%s: %s\n' "$name" "$(absent_reason "$name")"
        conf+=("# $name: $(absent_reason "$name")")
        ;;
      unreadable)
        printf '%s: cannot read the current value, skipped\n' "$name"
        conf+=("# $name: unreadable, skipped")
        ;;
    esac
  done

  record_previous "${previous[@]}"

  local current
  for entry in "${pending[@]}"; do
    IFS='|' read -r name kind wanted current <<<"$entry"
    attempted=$((attempted + 1))
    if write_sysctl "$(sysctl_path "$name")" "$wanted"; then
      applied=$((applied + 1))
      printf '%s: %s -> %s\n' "$name" "$current" "$wanted"
      conf+=("$name = $wanted")
    else
      printf '%s: refused by the kernel: %s (stays %s)\n' "$name" "$WRITE_ERROR" "$current"
      conf+=("# $name = $wanted was refused by the kernel: $WRITE_ERROR")
    fi
  done
  [ "$attempted" -gt 0 ] || printf 'no sysctl value to change\n'

  {
    printf '# written by tools/tune/%s.sh --apply; removed by --revert\n' "$ROLE"
    printf '%s\n' "${conf[@]}"
  } | install_file "$SYSCTL_CONF"
  limits_conf_text | install_file "$LIMITS_CONF"
  print_notes

  if [ "$attempted" -gt 0 ] && [ "$applied" -eq 0 ] && [ "$already" -eq 0 ]; then
    printf 'nothing could be applied: the kernel refused every change (run --revert to remove the files)\n' >&2
    return 1
  fi
  return 0
}

# A min setting already above the recommendation is left to whatever set
# it (often the kernel, from the RAM size): pinning it would lower it later.
conf_line_for_ok() {
  local name=$1 kind=$2 wanted=$3
  if [ "$kind" = min ] && [ "$CURRENT" != "$wanted" ]; then
    printf '# %s: already %s >= %s, left alone' "$name" "$CURRENT" "$wanted"
  else
    printf '%s = %s' "$name" "$wanted"
  fi
}

restore_sysctl() {
  local name=$1 recorded=$2 path line=""
  path=$(sysctl_path "$name")
  if [ ! -e "$path" ]; then
    printf '%s: no longer present, cannot restore %s\n' "$name" "$(normalize "$recorded")"
    return 0
  fi
  { IFS= read -r line || [ -n "$line" ]; } 2>/dev/null <"$path" || line=unreadable
  if [ "$line" = "$recorded" ]; then
    printf '%s: already %s\n' "$name" "$(normalize "$recorded")"
  elif write_sysctl "$path" "$recorded"; then
    printf '%s: %s -> %s\n' "$name" "$(normalize "$line")" "$(normalize "$recorded")"
  else
    printf '%s: refused by the kernel: %s (still %s)\n' "$name" "$WRITE_ERROR" "$(normalize "$line")"
    return 1
  fi
}

revert() {
  local kind name value failed=0
  if [ ! -f "$STATE_FILE" ]; then
    printf 'nothing to revert: no record of an --apply at %s\n' "$STATE_FILE"
    return 0
  fi
  while IFS=$'\t' read -r kind name value; do
    case $kind in
      sysctl) restore_sysctl "$name" "$value" || failed=1 ;;
      file)
        if [ -e "$name" ]; then
          rm -f "$name"
          printf 'removed %s\n' "$name"
        fi
        ;;
    esac
  done <"$STATE_FILE"
  if [ "$failed" = 1 ]; then
    printf 'some values could not be restored; %s kept for another --revert\n' "$STATE_FILE" >&2
    return 1
  fi
  rm -f "$STATE_FILE"
  rmdir "$STATE_DIR" 2>/dev/null || true
  printf 'reverted; %s removed\n' "$STATE_FILE"
}

tune_main() {
  ROLE=$1
  shift
  STATE_FILE="$STATE_DIR/$ROLE.previous"
  SYSCTL_CONF="$ETC_ROOT/sysctl.d/90-limaoim-$ROLE.conf"
  LIMITS_CONF="$ETC_ROOT/security/limits.d/90-limaoim-$ROLE.conf"
  local arg mode="" strict=0
  for arg in "$@"; do
    case $arg in
      --check | --apply | --revert)
        [ -z "$mode" ] || usage_error "choose one of --check, --apply, --revert"
        mode=$arg
        ;;
      --strict) strict=1 ;;
      --help | -h)
        usage
        exit 0
        ;;
      *) usage_error "unknown option: $arg" ;;
    esac
  done
  [ -n "$mode" ] || usage_error "no mode given"
  [ "$strict" = 0 ] || [ "$mode" = --check ] || usage_error "--strict goes with --check only"
  case $mode in
    --check) check "$strict" ;;
    --apply) apply ;;
    --revert) revert ;;
  esac
}
