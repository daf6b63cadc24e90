"""systemd integration without a dependency: READY=1, WATCHDOG=1, STATUS= and STOPPING=1 via $NOTIFY_SOCKET.

The protocol is one datagram per message on the Unix socket systemd names in ``NOTIFY_SOCKET`` (a path, or an
abstract-namespace name written with a leading '@'). Outside systemd every call is a no-op.
"""

import logging
import os
import socket
import time
from typing import Any, Callable, Optional

LOG = logging.getLogger(__name__)


def notify_address(value: Optional[str]) -> Optional[str]:
    """Turn a ``NOTIFY_SOCKET`` value into a socket address ('@name' → abstract '\\0name'); None when unset."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    return value


def sd_notify(message: str, socket_value: Optional[str] = None) -> bool:
    """Send one notification; True when it was delivered, False outside systemd or on a socket error."""
    address = notify_address(socket_value if socket_value is not None else os.environ.get("NOTIFY_SOCKET"))
    if address is None:
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(address)
        sock.sendall(message.encode("utf-8"))
        return True
    except OSError as exc:
        LOG.warning("systemd notification %r to %s failed: %s", message, socket_value or "$NOTIFY_SOCKET", exc)
        return False
    finally:
        sock.close()


def watchdog_interval_s(environ: Optional[dict] = None, pid: Optional[int] = None) -> Optional[float]:
    """Half of systemd's WatchdogSec for this process (from WATCHDOG_USEC/WATCHDOG_PID), None when not enabled."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and int(owner) != (os.getpid() if pid is None else pid):
        return None
    try:
        return max(int(usec) / 1e6 / 2.0, 0.001)
    except ValueError:
        return None


class ServiceNotifier(object):
    """Tells systemd the service is ready, alive (rate-limited watchdog pings) and stopping."""

    def __init__(self, socket_value: Optional[str] = None, watchdog_s: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.socket_value = socket_value if socket_value is not None else os.environ.get("NOTIFY_SOCKET")
        self.watchdog_s = watchdog_s if watchdog_s is not None else watchdog_interval_s()
        self.clock = clock
        self.last_ping = None  # type: Optional[float]
        self.is_ready = False

    @property
    def active(self) -> bool:
        """True when running under systemd with a notify socket."""
        return bool(self.socket_value)

    def send(self, message: str) -> bool:
        """Send a raw notification (no-op outside systemd)."""
        if not self.active:
            return False
        return sd_notify(message, self.socket_value)

    def ready(self, status: str = "running") -> bool:
        """READY=1 once the first frame went through: systemd then counts the service as started."""
        self.is_ready = True
        return self.send("READY=1\nSTATUS={}".format(status))

    def status(self, text: str) -> bool:
        """Free-text STATUS= shown by ``systemctl status``."""
        return self.send("STATUS={}".format(text))

    def watchdog(self) -> bool:
        """WATCHDOG=1 at most once per half WatchdogSec (never when systemd set none); True when sent."""
        if not self.active or self.watchdog_s is None:
            return False
        now = self.clock()
        if self.last_ping is not None and now - self.last_ping < self.watchdog_s:
            return False
        self.last_ping = now
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        """STOPPING=1 when shutdown begins."""
        return self.send("STOPPING=1")

    def observer(self, frame_bgr: Any, detections: Any, frame_index: int, stats: Any) -> None:
        """Frame observer: READY=1 on the first frame, then watchdog pings, so a stalled loop gets restarted."""
        if not self.is_ready:
            self.ready("processing frames")
        self.watchdog()
