"""systemd integration without a dependency: READY=1, WATCHDOG=1, STATUS= and STOPPING=1 via $NOTIFY_SOCKET.

The protocol is one datagram per message on the Unix socket systemd names in ``NOTIFY_SOCKET`` (a path, or an
abstract-namespace name written with a leading '@'). Outside systemd every call is a no-op.
"""

import logging
import os
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import EXIT_BAD_CONFIG

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
    sock.setblocking(False)  # a receiver that stopped reading must never stall the detection loop
    try:
        sock.connect(address)
        sock.send(message.encode("utf-8"))
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
        self.last_ping: Optional[float] = None
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


def configure_logging(level: str) -> None:
    """Log to stderr (the journal under systemd) at ``logging.level`` unless the program configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        # systemd's journal adds its own timestamp; elsewhere a time helps reading event logs
        fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("INVOCATION_ID") else \
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
    logging.getLogger("jetson_detect").setLevel(level)


class ClassFilter(object):
    """A detector that keeps only the classes named in ``detection.classes``; everything else passes through."""

    def __init__(self, detector: Any, keep_ids: Any) -> None:
        self.detector = detector
        self.keep_ids = sorted(int(i) for i in keep_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.detector, name)

    def _keep(self, detections: Any) -> Any:
        import numpy as np

        mask = np.isin(np.asarray(detections.class_ids), self.keep_ids)
        return type(detections)(detections.boxes[mask], detections.scores[mask], detections.class_ids[mask])

    def detect(self, image_bgr: Any) -> Any:
        """Detections of the kept classes only."""
        return self._keep(self.detector.detect(image_bgr))

    def detect_batch(self, images: Any) -> Any:
        """Per image, detections of the kept classes only."""
        return [self._keep(d) for d in self.detector.detect_batch(images)]

    def infer(self, batch: Any) -> Any:
        """Per batch item, detections of the kept classes only (input pixels)."""
        return [self._keep(d) for d in self.detector.infer(batch)]

    def collect(self, handle: Any) -> Any:
        """Detections of the kept classes of a frame given to ``submit`` (forwarded when the detector has it)."""
        return self._keep(self.detector.collect(handle))


def filter_classes(detector: Any, config: dict) -> Any:
    """The detector itself, or a ClassFilter around it when ``detection.classes`` names classes to keep."""
    from .config import check_class_names

    wanted = config["detection"]["classes"]
    if not wanted:
        return detector
    names = list(detector.names)
    check_class_names({"detection": {"classes": wanted}, "alarms": {"enabled": False}}, names)
    return ClassFilter(detector, [names.index(name) for name in wanted])


class CameraAlarms(object):
    """One alarm observer per camera, each with its own rule state; as a frame observer it hands every frame to its
    camera's (``stats["camera"]``; the first camera when the stats name none)."""

    def __init__(self, observers: "Dict[str, Any]", logs: Sequence[Any] = ()) -> None:
        self.by_camera = dict(observers)
        self.logs = list(logs)  # the event logs the cameras share (one per events folder), closed last
        self._first = next(iter(self.by_camera.values()))

    def __call__(self, frame_bgr: Any, detections: Any, frame_index: int, stats: Any = None) -> None:
        name = stats.get("camera") if isinstance(stats, dict) else None
        observer = self.by_camera.get(str(name), self._first)
        observer(frame_bgr, detections, frame_index, stats)

    def camera_status(self, name: str) -> dict:
        """One camera's alarm state, for its entry in ``Pipeline.status()``."""
        return {"alarms": self.by_camera[name].status()}

    def status(self) -> dict:
        """Over every camera: the classes alarmed somewhere, events raised, events waiting for disk."""
        states = [observer.status() for observer in self.by_camera.values()]
        logs = dict((id(observer.log), observer.log) for observer in self.by_camera.values())
        return {"active": sorted(set(c for s in states for c in s["active"])),
                "events": sum(s["events"] for s in states),
                "pending_events": sum(log.pending for log in logs.values())}

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every camera's queued writes are done."""
        return all([observer.flush(timeout_s) for observer in self.by_camera.values()])

    def close(self) -> None:
        for observer in self.by_camera.values():
            observer.close()
        for log in self.logs:
            log.close()


class ServiceParts(object):
    """What the unattended watch adds to the loop: alarms (one rule state per camera), telemetry and systemd
    notifications, from one config.

    ``observers`` go to the pipeline; ``camera_status(name)`` to each camera; ``extra_stats()`` feeds the
    overlay/stats endpoint; ``close()`` at the end. ``cameras``: the watch's cameras (``watch_cameras``).
    """

    def __init__(self, config: dict, names: Any, notifier: Optional[ServiceNotifier] = None,
                 cameras: Optional[List[dict]] = None) -> None:
        from ..errors import JetsonDetectError
        from .alarms import EVENTS_FILE, AlarmObserver, EventLog
        from .config import check_class_names
        from .pipeline import camera_name
        from .telemetry import create_telemetry

        configure_logging(config["logging"]["level"])
        check_class_names(config, list(names))
        cameras = cameras if cameras is not None else [{"name": camera_name(0), "alarms": config["alarms"]}]
        self._cameras = cameras
        for camera in cameras:
            check_class_names({"detection": {"classes": None}, "alarms": camera["alarms"]}, list(names),
                              origin="config: cameras.{}".format(camera["name"]) if len(cameras) > 1 else "config")
        self.notifier = notifier if notifier is not None else ServiceNotifier()
        self.alarms: Optional[CameraAlarms] = None
        if config["alarms"]["enabled"]:
            observers: Dict[str, Any] = {}
            logs: Dict[str, Any] = {}  # events folder -> the one log its cameras share
            try:
                for camera in cameras:
                    folder = camera["alarms"]["events_dir"]
                    if folder not in logs:
                        os.makedirs(folder, exist_ok=True)
                        logs[folder] = EventLog(os.path.join(folder, EVENTS_FILE))
                    observers[camera["name"]] = AlarmObserver(camera["alarms"], list(names), camera=camera["name"],
                                                              event_log=logs[folder])
            except OSError as exc:
                self._close_all(observers, logs)
                raise JetsonDetectError("config: alarms.events_dir: cannot create {} ({}); choose a writable "
                                        "folder".format(exc.filename, exc.strerror or exc)) from None
            except BaseException:
                self._close_all(observers, logs)
                raise
            self.alarms = CameraAlarms(observers, list(logs.values()))
        self.telemetry = create_telemetry(config)
        self.observers: list = [self.notifier.observer]
        if self.alarms is not None:
            self.observers.insert(0, self.alarms)
        self.camera_observers: Dict[str, list] = {camera["name"]: [] for camera in cameras}
        self.mqtt = self._start_mqtt(config, [camera["name"] for camera in cameras])

    def _start_mqtt(self, config: dict, names: List[str]) -> Any:
        """MQTT (issue 12), behind ``mqtt.enabled``: every camera's alarm events via its observer's listener, its
        stats via a frame observer of that camera (``camera_observers``)."""
        from ..integrations.mqtt import create_mqtt_publisher

        classes = sorted(set(c for camera in self._cameras for c in camera["alarms"]["rules"])) \
            if config["alarms"]["enabled"] else []
        publisher = create_mqtt_publisher(config, names, classes)
        if publisher is not None:
            for name in names:
                if self.alarms is not None:
                    self.alarms.by_camera[name].add_listener(publisher.listener)
                self.camera_observers[name].append(publisher.frame_observer(name))
        return publisher

    @staticmethod
    def _close_all(observers: Dict[str, Any], logs: Dict[str, Any]) -> None:
        for observer in observers.values():
            observer.close()
        for log in logs.values():
            log.close()

    def camera_status(self, name: str) -> Optional[Callable[[], dict]]:
        """What a camera adds to its status entry (its alarms), or None without alarms."""
        if self.alarms is None:
            return None
        alarms = self.alarms
        return lambda: alarms.camera_status(name)

    def extra_stats(self) -> dict:
        """Telemetry sample, its one-line summary and alarm status (JSON-able)."""
        stats: dict = {}
        if self.telemetry is not None:
            stats["telemetry"] = self.telemetry.latest()
            stats["telemetry_line"] = self.telemetry.summary()
        if self.alarms is not None:
            stats["alarms"] = self.alarms.status()
        return stats

    def close(self) -> None:
        """STOPPING=1, then write what the alarms still hold and stop telemetry."""
        self.notifier.stopping()
        if self.alarms is not None:
            self.alarms.close()
        if self.mqtt is not None:
            self.mqtt.stop()  # after the alarms: their last events (end) are queued by then
        if self.telemetry is not None:
            self.telemetry.stop()


def watch_cameras(config: dict) -> List[dict]:
    """The cameras of a validated config, each as {name, source, detect_fps, outputs, alarms}: the ``cameras:``
    list, else one camera cam0 from ``camera`` N or ``source``."""
    from ..errors import JetsonDetectError
    from .config import camera_alarms
    from .pipeline import camera_name

    if config["cameras"]:
        return [{"name": c["name"], "source": c["source"], "outputs": list(c["outputs"]),
                 "detect_fps": c["detect_fps"] if c["detect_fps"] is not None else config["detect_fps"],
                 "alarms": camera_alarms(config, c)} for c in config["cameras"]]
    if config["camera"] is not None:
        source = str(config["camera"])
    elif config["source"]:
        source = str(config["source"])
    else:
        raise JetsonDetectError("config: source: no input; set source (csi://0, /dev/video0, rtsp://..., a video), "
                                "camera or cameras in the config, or pass --source URI / --camera N",
                                exit_code=EXIT_BAD_CONFIG)
    return [{"name": camera_name(0), "source": source, "outputs": [], "detect_fps": config["detect_fps"],
             "alarms": config["alarms"]}]


def run_watch(config: dict, detector: Any, note: Callable[[str], None] = print,
              max_frames: Optional[int] = None, signals: Any = None) -> dict:
    """The unattended loop for a validated config: its cameras and outputs, with alarms, telemetry and systemd
    notifications; returns the pipeline's summary. SIGINT/SIGTERM/SIGHUP stop it cleanly (``signals``: handlers
    the caller installed before loading the model). A config the model cannot serve (an alarm class it lacks) is
    a bad-config error (exit 78: the unit does not restart)."""
    from ..errors import JetsonDetectError
    from ..video.sinks import JsonlSink, open_sinks
    from ..video.sources import open_source
    from .pipeline import Camera, open_outputs, run_cameras
    from .tracker import create_tracker

    entries = watch_cameras(config)
    try:
        detector = filter_classes(detector, config)
        parts = ServiceParts(config, detector.names, cameras=entries)
    except JetsonDetectError as exc:
        raise JetsonDetectError(str(exc), exit_code=EXIT_BAD_CONFIG) from None
    cameras: list = []
    sinks: list = []
    try:
        for entry in entries:
            source = open_source(entry["source"])
            camera_sinks = open_sinks(entry["outputs"], fps=getattr(source, "fps", 30.0),
                                      http_token=config["http_token"], note=note, degrade=True)
            tracker = create_tracker(config["tracker"]) if config["tracker"]["enabled"] else None
            cameras.append(Camera(entry["name"], source, entry["detect_fps"], sinks=camera_sinks,
                                  observers=parts.camera_observers[entry["name"]],
                                  status_extra=parts.camera_status(entry["name"]), tracker=tracker))
        sinks = open_outputs(list(config["outputs"]), cameras, http_token=config["http_token"], note=note,
                             degrade=True)
        if config["save_json"]:  # the watch keeps running when its disk fills up, and says so
            sinks.append(JsonlSink(config["save_json"], degrade=True, note=note))
    except BaseException:
        for sink in sinks + [s for camera in cameras for s in camera.sinks]:
            sink.close()
        parts.close()
        raise
    try:
        return run_cameras(detector, cameras, sinks, observers=parts.observers, note=note, max_frames=max_frames,
                           extra_stats=parts.extra_stats, signals=signals)
    finally:
        parts.close()
