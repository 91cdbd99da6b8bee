#!/usr/bin/env bash
# Install Debian packages for bootstrap.sh: `scripts/apt_install.sh PKG...` (as root, or with sudo).
# Says what it does first, since it takes minutes; waits up to APT_LOCK_WAIT seconds (600) for another
# apt or unattended-upgrades to release the package lock instead of failing at once; quiet unless it
# fails (then the log's tail is printed).
set -euo pipefail
[ "$#" -gt 0 ] || exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
WAIT="${APT_LOCK_WAIT:-600}"
LOG="$(mktemp -t layerlens-apt.XXXXXX)"
trap 'rm -f "$LOG"' EXIT
fail() {
    echo "bootstrap: FAILED: $*" >&2
    tail -n 80 "$LOG" >&2 || true
    exit 1
}
echo "bootstrap: installing system packages: $* (minutes; waits up to $((WAIT / 60)) minutes for another" \
    "apt or unattended-upgrades to release the package lock)" >&2
export DEBIAN_FRONTEND=noninteractive
LOCK=(-o "DPkg::Lock::Timeout=$WAIT")
$SUDO apt-get "${LOCK[@]}" update -q >>"$LOG" 2>&1 || fail "apt-get update"
$SUDO apt-get "${LOCK[@]}" install -y -q --no-install-recommends "$@" >>"$LOG" 2>&1 \
    || fail "apt-get install $*"
