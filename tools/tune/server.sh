#!/usr/bin/env bash
# Kernel settings for the machine running the limaoim server (125k clients in
# the reference load test). Why each value: tools/tune/README.md.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

SYSCTLS=(
  "fs.nr_open min 2000000"
  "fs.file-max min 2000000"
  "net.netfilter.nf_conntrack_max min 1048576"
  "net.ipv4.tcp_mem exact 786432 2097152 3145728"
  "net.ipv4.tcp_rmem exact 4096 4096 16777216"
  "net.ipv4.tcp_wmem exact 4096 4096 16777216"
  "net.ipv4.tcp_tw_reuse exact 1"
  "net.ipv4.tcp_timestamps exact 1"
  "net.core.somaxconn min 65535"
  "net.ipv4.tcp_max_syn_backlog min 65535"
  "net.core.netdev_max_backlog min 16384"
)

IGNORED_SYSCTLS+=(
  "net.ipv4.ip_forward|left as is: the reference load test set 1, but a server that only accepts connections routes nothing, and writing it turns the host into a router and resets every interface's IPv4 settings"
)

tune_main server "$@"
