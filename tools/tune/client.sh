#!/usr/bin/env bash
# Kernel settings for a load machine opening 25,000 client connections to one
# limaoim server address. Why each value: tools/tune/README.md.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

SYSCTLS=(
  "fs.nr_open min 2000000"
  "fs.file-max min 2000000"
  "net.ipv4.ip_local_port_range exact 1024 65535"
  "net.ipv4.tcp_tw_reuse exact 1"
  "net.ipv4.tcp_timestamps exact 1"
  "net.ipv4.tcp_mem exact 786432 2097152 3145728"
  "net.ipv4.tcp_rmem exact 4096 4096 16777216"
  "net.ipv4.tcp_wmem exact 4096 4096 16777216"
)

tune_main client "$@"
