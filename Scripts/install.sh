#!/usr/bin/env bash
# Installs Portcullis as a systemd service: the release binary to $PREFIX/bin, the unit to
# /etc/systemd/system, the example config to /etc/portcullis/portcullis.yaml (kept if present).
# Usage: sudo Scripts/install.sh [--no-start]     (PREFIX=/usr/local, DESTDIR= for staging)
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
Scripts/bootstrap.sh >/dev/null
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
BIN=$(Scripts/build-release.sh portcullis)
install -D -m 0755 "$BIN/portcullis" "$DESTDIR$PREFIX/bin/portcullis"
sed "s|/usr/local/bin/portcullis|$PREFIX/bin/portcullis|g" Config/portcullis.service > /tmp/portcullis.service.$$
install -D -m 0644 /tmp/portcullis.service.$$ "$DESTDIR/etc/systemd/system/portcullis.service"
rm -f /tmp/portcullis.service.$$
if [ ! -e "$DESTDIR/etc/portcullis/portcullis.yaml" ]; then
    install -D -m 0644 Config/portcullis.example.yaml "$DESTDIR/etc/portcullis/portcullis.yaml"
fi
"$DESTDIR$PREFIX/bin/portcullis" check --config "$DESTDIR/etc/portcullis/portcullis.yaml"
if command -v systemd-analyze >/dev/null 2>&1 && [ -z "$DESTDIR" ]; then
    systemd-analyze verify /etc/systemd/system/portcullis.service
fi
if [ -z "$DESTDIR" ] && [ "${1:-}" != "--no-start" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now portcullis
    systemctl --no-pager status portcullis | head -5
fi
echo "installed: $DESTDIR$PREFIX/bin/portcullis, $DESTDIR/etc/systemd/system/portcullis.service, $DESTDIR/etc/portcullis/portcullis.yaml"
