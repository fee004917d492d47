#!/usr/bin/env bash
# Installs what building and testing Portcullis needs on Debian, only when it is missing.
# Usage: Scripts/bootstrap.sh [extra apt packages...]
set -euo pipefail

need=()
for pkg in libssl-dev libhiredis-dev libyaml-dev pkg-config openssl ca-certificates "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "bootstrap: installing ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# A package install may start services (redis-server, nginx) system-wide; tests and benchmarks
# start their own on free ports instead.
if ! command -v swift >/dev/null 2>&1; then
    if [ -x /opt/swift/usr/bin/swift ]; then export PATH=/opt/swift/usr/bin:$PATH; else
        echo "bootstrap: the Swift 6 toolchain is required (https://swift.org/install)" >&2; exit 1; fi
fi
