#!/usr/bin/env bash
# Kernel settings for the machine running the limaoim server (125k clients in
# the reference load test). Why each value: tools/tune/README.md.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# The settings are those of the sysctl drop-in tools/99-limaoim.conf, so the
# file and this script cannot disagree: "name = value" lines, each "exact"
# unless a "# at least" comment line comes before it ("min": never lowered).
SYSCTL_FILE=${LIMAOIM_TUNE_SYSCTL_FILE:-$(dirname "$0")/../99-limaoim.conf}
SYSCTLS=()
load_sysctls() {
  local line kind=exact name value
  local -a words
  if [ ! -r "$1" ]; then
    printf 'server: cannot read the settings file %s\n' "$1" >&2
    exit 1
  fi
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      '# at least') kind=min ;;
      '' | '#'* | ';'*) ;;
      *=*)
        read -r name <<<"${line%%=*}"
        read -r -a words <<<"${line#*=}"
        value="${words[*]}"
        SYSCTLS+=("$name $kind $value")
        kind=exact
        ;;
      *)
        printf 'server: %s: not a "name = value" line: %s\n' "$1" "$line" >&2
        exit 1
        ;;
    esac
  done <"$1"
}
load_sysctls "$SYSCTL_FILE"

IGNORED_SYSCTLS+=(
  "net.ipv4.ip_forward|left as is: the reference load test set 1, but a server that only accepts connections routes nothing, and writing it turns the host into a router and resets every interface's IPv4 settings"
)

tune_main server "$@"
