#!/usr/bin/env bash
# Install (or update) jetson_detect as the systemd service jetson-detect; safe to run again.
#
#   sudo scripts/install_service.sh [--config configs/fire_smoke.yaml] [--no-start] [--root DIR]
#
# Creates the system user jetson-detect (groups video, and jtop when present), copies the package, configs and
# weights to /opt/jetson-detect, writes /etc/jetson-detect/config.yaml and /etc/default/jetson-detect only when
# they do not exist yet (your edits are kept), installs the unit, enables and (re)starts it, and shows its status.
# --root DIR installs the files under DIR without touching users or systemd (packaging and tests).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATE="$REPO/configs/fire_smoke.yaml"
ROOT=""
START=1
SERVICE_USER=jetson-detect

while [ $# -gt 0 ]; do
    case "$1" in
        --config) TEMPLATE="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
        --no-start) START=0; shift ;;
        --root) ROOT="$(mkdir -p "$2" && cd "$2" && pwd)"; START=0; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "install_service.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

[ -f "$TEMPLATE" ] || { echo "install_service.sh: config template $TEMPLATE not found" >&2; exit 1; }
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install_service.sh: run as root (sudo $0 $*)" >&2
    exit 1
fi

APP="$ROOT/opt/jetson-detect"
ETC="$ROOT/etc/jetson-detect"
STATE="$ROOT/var/lib/jetson-detect"
CACHE="$ROOT/var/cache/jetson-detect"
UNIT_DIR="$ROOT/etc/systemd/system"

if [ -z "$ROOT" ]; then
    if ! id "$SERVICE_USER" >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/jetson-detect --no-create-home \
            --shell /usr/sbin/nologin "$SERVICE_USER"
        echo "created system user $SERVICE_USER"
    fi
    for group in video jtop; do
        if getent group "$group" >/dev/null && ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$group"; then
            usermod -aG "$group" "$SERVICE_USER"
            echo "added $SERVICE_USER to group $group"
        fi
    done
fi

# The application: replaced on every run so an update never leaves stale modules behind.
mkdir -p "$APP"
for part in jetson_detect configs weights; do
    if [ -e "$REPO/$part" ]; then
        rm -rf "${APP:?}/$part.new"
        cp -a "$REPO/$part" "$APP/$part.new"
        find "$APP/$part.new" -name '__pycache__' -prune -exec rm -rf {} +
        rm -rf "${APP:?}/$part"
        mv "$APP/$part.new" "$APP/$part"
    fi
done

# Config and environment: written once, then they belong to the administrator.
mkdir -p "$ETC" "$ROOT/etc/default" "$STATE/events" "$CACHE/engines" "$CACHE/cuda" "$UNIT_DIR"
if [ ! -f "$ETC/config.yaml" ]; then
    sed -e "s|^\([[:space:]]*events_dir:\).*|\1 /var/lib/jetson-detect/events|" \
        -e "s|^\([[:space:]]*engine_cache:\).*|\1 /var/cache/jetson-detect/engines|" \
        "$TEMPLATE" > "$ETC/config.yaml"
    echo "wrote $ETC/config.yaml from $TEMPLATE"
fi
if [ ! -f "$ROOT/etc/default/jetson-detect" ]; then
    cat > "$ROOT/etc/default/jetson-detect" <<'ENV'
# Environment of the jetson-detect service (systemctl restart jetson-detect after editing).
JETSON_DETECT_CONFIG=/etc/jetson-detect/config.yaml
# Extra command-line flags, e.g. --source rtsp://camera/stream --output http://0.0.0.0:8080
JETSON_DETECT_ARGS=
# The unit sets OPENBLAS_CORETYPE=ARMV8 (NumPy 1.19.5 dies with "Illegal instruction" on Jetsons without it).
ENV
    echo "wrote $ROOT/etc/default/jetson-detect"
fi
install -m 0644 "$REPO/systemd/jetson-detect.service" "$UNIT_DIR/jetson-detect.service"

if [ -n "$ROOT" ]; then
    echo "installed under $ROOT (no user, no systemctl)"
    exit 0
fi

chown -R "$SERVICE_USER:$SERVICE_USER" "$STATE" "$CACHE"
chmod 0755 "$APP"
systemctl daemon-reload
systemctl enable jetson-detect.service
if [ "$START" -eq 1 ]; then
    systemctl restart jetson-detect.service
    sleep 2
fi
systemctl --no-pager --lines=20 status jetson-detect.service || true
echo "logs: journalctl -u jetson-detect -f"
