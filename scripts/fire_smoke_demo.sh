#!/usr/bin/env bash
# Fire/smoke watch with the web view on this device's network address, for a session over SSH.
#
#   scripts/fire_smoke_demo.sh [run flags...]      e.g. --source clip.mp4, --camera 1, --weights other.wts
#
# Prints the URL to open from a laptop on the same network; Ctrl-C stops the detector cleanly (exit code 0).
# PORT (default 8080) picks the web port; PYTHON (default python3) the interpreter.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PORT="${PORT:-8080}"
PYTHON="${PYTHON:-python3}"

device_ip() {
    local ip=""
    if command -v ip >/dev/null 2>&1; then
        ip="$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") {print $(i + 1); exit}}')"
    fi
    if [ -z "$ip" ] && command -v hostname >/dev/null 2>&1; then
        ip="$(hostname -I 2>/dev/null | awk '{print $1}')"
    fi
    echo "${ip:-127.0.0.1}"
}

URL="http://$(device_ip):$PORT/"
echo "fire/smoke watch: open $URL in a browser on your laptop (same network). Ctrl-C stops it."

"$PYTHON" -m jetson_detect --config configs/fire_smoke.yaml --output "http://0.0.0.0:$PORT" "$@" &
CHILD=$!

stop() {
    echo "stopping..."
    kill -TERM "$CHILD" 2>/dev/null
}
trap stop INT TERM HUP

# wait returns early when a trapped signal arrives; keep waiting until the detector has really exited.
while kill -0 "$CHILD" 2>/dev/null; do
    wait "$CHILD"
done
wait "$CHILD"
STATUS=$?
trap - INT TERM HUP
echo "fire/smoke watch stopped (exit code $STATUS)"
exit "$STATUS"
