#!/usr/bin/env bash
# Installs limaoim as a systemd service (README "Deploying"). Idempotent: a
# second run changes nothing that is already right, and never overwrites an
# edited /etc/limaoim/limaoim.toml.
#
#   sudo tools/install-service.sh [--build-dir DIR] [--no-tune] [--no-start]
#   tools/install-service.sh --root DIR [--build-dir DIR]   stage into DIR only
#
# What it does, as root on the machine:
#   /usr/local/bin/limaoim, limaoim-stat     from the build (default build-release)
#   user and group limaoim                   system account, no login
#   /etc/limaoim/limaoim.toml                limaoim.example.toml with data_dir
#                                            /var/lib/limaoim/data; 0640 root:limaoim;
#                                            only when absent; then --check-config
#   /etc/systemd/system/limaoim.service      tools/limaoim.service
#   kernel settings                          tools/tune/server.sh --apply, which
#                                            applies tools/99-limaoim.conf (--no-tune: skipped)
#   systemctl daemon-reload, enable, restart (--no-start: enable only)
# With --root DIR the files go under DIR and nothing else is touched: no
# account, no kernel setting, no systemctl (tests/service/test_service.sh).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
root=""
build_dir="$repo/build-release"
tune=1
start=1

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case $1 in
    --root)
      root=${2:?--root needs a directory}
      shift 2
      ;;
    --build-dir)
      build_dir=${2:?--build-dir needs a directory}
      shift 2
      ;;
    --no-tune)
      tune=0
      shift
      ;;
    --no-start)
      start=0
      shift
      ;;
    --help | -h)
      usage
      exit 0
      ;;
    *)
      printf 'install-service: unknown option %s\n' "$1" >&2
      usage >&2
      exit 2
      ;;
  esac
done

say() { printf 'install-service: %s\n' "$*"; }
die() {
  printf 'install-service: %s\n' "$*" >&2
  exit 1
}

if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (or stage the files with --root DIR)"
fi
for binary in limaoim limaoim-stat; do
  [ -x "$build_dir/$binary" ] ||
    die "no $build_dir/$binary: build first (meson setup build-release --buildtype=release && ninja -C build-release), or give --build-dir"
done

# Copies $1 to $2 with mode $3 unless $2 already has those bytes.
put() {
  local from=$1 to=$2 mode=$3
  if [ -f "$to" ] && cmp -s "$from" "$to"; then
    chmod "$mode" "$to"
    say "$to: unchanged"
    return 0
  fi
  mkdir -p "$(dirname "$to")"
  install -m "$mode" "$from" "$to.tmp.$$"
  mv -f "$to.tmp.$$" "$to"
  say "$to: installed"
  changed=1
}

changed=0
bin_dir="$root/usr/local/bin"
put "$build_dir/limaoim" "$bin_dir/limaoim" 0755
put "$build_dir/limaoim-stat" "$bin_dir/limaoim-stat" 0755

if [ -z "$root" ]; then
  if getent passwd limaoim >/dev/null; then
    say "user limaoim: exists"
  else
    useradd --system --user-group --home-dir /var/lib/limaoim --no-create-home \
      --shell /usr/sbin/nologin --comment "limaoim server" limaoim
    say "user limaoim: created"
  fi
fi

config="$root/etc/limaoim/limaoim.toml"
if [ -e "$config" ]; then
  say "$config: exists, left as it is"
else
  mkdir -p "$(dirname "$config")"
  sed -e 's|^data_dir = .*|data_dir = "/var/lib/limaoim/data"|' "$repo/limaoim.example.toml" >"$config.tmp.$$"
  chmod 0640 "$config.tmp.$$"
  [ -n "$root" ] || chgrp limaoim "$config.tmp.$$"
  mv -f "$config.tmp.$$" "$config"
  say "$config: written from limaoim.example.toml (data_dir /var/lib/limaoim/data)"
  changed=1
fi
# The check the unit runs before every start (ExecStartPre), now, so a bad
# file shows here rather than in the journal.
"$bin_dir/limaoim" --check-config "$config" || die "$config does not pass --check-config: fix it, then run this again"

put "$repo/tools/limaoim.service" "$root/etc/systemd/system/limaoim.service" 0644

if [ -n "$root" ]; then
  say "staged under $root: no account, kernel setting or systemctl touched"
  exit 0
fi

if [ "$tune" = 1 ]; then
  "$repo/tools/tune/server.sh" --apply || say "warning: some kernel settings were refused (see above); the service still runs"
else
  say "kernel settings: skipped (--no-tune); check them with tools/tune/server.sh --check"
fi

if [ ! -d /run/systemd/system ]; then
  say "systemd is not running here: start it yourself with systemctl enable --now limaoim"
  exit 0
fi
systemctl daemon-reload
systemctl enable limaoim.service
if [ "$start" = 0 ]; then
  say "enabled; not started (--no-start): systemctl start limaoim"
elif [ "$changed" = 1 ] || ! systemctl is-active --quiet limaoim.service; then
  systemctl restart limaoim.service
  say "started: systemctl status limaoim; journalctl -u limaoim -f"
else
  say "running, nothing changed: not restarted"
fi
