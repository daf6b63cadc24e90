"""MQTT: availability, alarm events, per-camera state and snapshots, stats, and Home Assistant discovery.

Topics under ``<topic_prefix>/<node>/``: ``available`` (``online`` retained, ``offline`` by last will and on a clean
stop), ``events`` (JSON new/update/end, QoS ``mqtt.qos``), ``<camera>/<class>`` (``ON``/``OFF``, retained),
``<camera>/snapshot`` (JPEG of the newest alarm), ``<camera>/status``, ``<camera>/fps``, ``temperature``,
``inference_ms``, ``disk_free_percent`` and ``stats`` (JSON every ``stats_interval_s``).

Nothing is lost while the broker is away: every event goes to a spool folder first (one file per event, bounded by
``spool_max_mb``; only at that limit the oldest are dropped, with a count in the log) and leaves it only when the
broker acknowledged it (PUBACK at QoS 1), one event in flight at a time so they arrive in order. An event can
arrive twice after a reconnect (QoS 1 is at-least-once): receivers deduplicate by the event's ``id``.

The detection loop only puts events and stats into memory (``listener``, ``frame_observer``); one publisher thread
talks to the broker through paho-mqtt's own network thread, which reconnects with backoff. Works with paho-mqtt
1.6 (Python 3.6) and 2.x (``CallbackAPIVersion``).
"""

import json
import logging
import os
import queue
import shutil
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from .. import __version__
from ..errors import JetsonDetectError

LOG = logging.getLogger(__name__)

SPOOL_SUFFIX = ".json"
ANNOUNCED_FILE = "announced.json"
RESEND_AFTER_S = 10.0  # an event without PUBACK this long is published again (receivers deduplicate by id)
SNAPSHOT_WAIT_S = 10.0  # the alarm writer saves the JPEG shortly after the event; wait this long for the file
POLL_S = 0.05

# Home Assistant binary_sensor device classes (https://www.home-assistant.io/integrations/binary_sensor/):
# smoke for smoke; heat for fire, whose "on" state HA shows as "Hot", the one class that means fire-like danger
# (problem would file a fire among device faults as "Problem"); occupancy for people.
BINARY_DEVICE_CLASS = {"smoke": "smoke", "fire": "heat", "flame": "heat", "person": "occupancy"}


class Topics(object):
    """The topic names of one node."""

    def __init__(self, prefix: str, node: str) -> None:
        self.base = "{}/{}".format(prefix, node)
        self.available = self.base + "/available"
        self.events = self.base + "/events"
        self.stats = self.base + "/stats"
        self.temperature = self.base + "/temperature"
        self.inference_ms = self.base + "/inference_ms"
        self.disk_free = self.base + "/disk_free_percent"

    def state(self, camera: str, class_name: str) -> str:
        return "{}/{}/{}".format(self.base, camera, class_name)

    def camera(self, camera: str, leaf: str) -> str:
        return "{}/{}/{}".format(self.base, camera, leaf)


def discovery_configs(mqtt_config: Dict[str, Any], cameras: Sequence[str],
                      classes: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Home Assistant MQTT discovery: config topic → payload, for every camera and alarm class, under one device.

    Per camera: a binary_sensor per class, an image of the newest alarm snapshot and an FPS sensor; per node:
    temperature, inference time and free disk sensors. All carry the availability topic and the node's device.
    """
    prefix = mqtt_config["discovery_prefix"]
    if prefix is None:
        return {}
    node = mqtt_config["node"]
    topics = Topics(mqtt_config["topic_prefix"], node)
    device = {"identifiers": ["jetson_detect_" + node], "name": "jetson_detect " + node,
              "manufacturer": "jetson_detect", "model": "YOLOv5 detector", "sw_version": __version__}
    common = {"availability_topic": topics.available, "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    configs: Dict[str, Dict[str, Any]] = {}

    def add(component: str, object_id: str, payload: Dict[str, Any]) -> None:
        unique = "{}_{}".format(node, object_id)
        body = dict(common, unique_id=unique, object_id=unique)
        body.update(payload)
        configs["{}/{}/{}/config".format(prefix, component, unique)] = body

    for camera in cameras:
        for class_name in classes:
            payload = {"name": "{} {}".format(camera, class_name), "state_topic": topics.state(camera, class_name),
                       "payload_on": "ON", "payload_off": "OFF", "qos": mqtt_config["qos"]}
            if class_name in BINARY_DEVICE_CLASS:
                payload["device_class"] = BINARY_DEVICE_CLASS[class_name]
            add("binary_sensor", "{}_{}".format(camera, class_name), payload)
        add("image", camera + "_snapshot", {"name": camera + " snapshot",
                                            "image_topic": topics.camera(camera, "snapshot"),
                                            "content_type": "image/jpeg"})
        add("sensor", camera + "_fps", {"name": camera + " FPS", "state_topic": topics.camera(camera, "fps"),
                                        "unit_of_measurement": "fps", "state_class": "measurement"})
    add("sensor", "temperature", {"name": "temperature", "state_topic": topics.temperature,
                                  "device_class": "temperature", "unit_of_measurement": "°C",
                                  "state_class": "measurement"})
    add("sensor", "inference_ms", {"name": "inference time", "state_topic": topics.inference_ms,
                                   "unit_of_measurement": "ms", "state_class": "measurement"})
    add("sensor", "disk_free", {"name": "disk free", "state_topic": topics.disk_free, "unit_of_measurement": "%",
                                "state_class": "measurement"})
    return configs


class EventSpool(object):
    """Events waiting for the broker, one file each (``<sequence>.json``) in a folder, oldest first.

    Bounded by ``max_bytes``: only when a new event would pass it, the oldest are dropped (counted and logged).
    The files survive a restart, so events of a run that ended while the broker was away are sent by the next one.
    """

    def __init__(self, folder: str, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        try:
            os.makedirs(folder, exist_ok=True)
            names = os.listdir(folder)
        except OSError as exc:
            raise JetsonDetectError("config: mqtt.spool_dir: cannot use {} ({}); choose a writable folder".format(
                folder, exc.strerror or exc)) from None
        self._entries: List[Tuple[int, int]] = []  # (sequence, size), oldest first
        for name in names:
            stem, suffix = os.path.splitext(name)
            if suffix == SPOOL_SUFFIX and stem.isdigit():
                try:
                    self._entries.append((int(stem), os.path.getsize(os.path.join(folder, name))))
                except OSError:
                    continue
        self._entries.sort()
        self.next_seq = self._entries[-1][0] + 1 if self._entries else 1
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._entries)

    def _path(self, seq: int) -> str:
        return os.path.join(self.folder, "{:012d}{}".format(seq, SPOOL_SUFFIX))

    def append(self, payload: bytes) -> None:
        """Store one event (written to a temporary name, then renamed: a crash never leaves half an event)."""
        dropped = 0
        while self._entries and self.total_bytes + len(payload) > self.max_bytes:
            self.remove(self._entries[0][0])
            dropped += 1
        if dropped:
            self.dropped += dropped
            LOG.warning("mqtt spool %s is full (mqtt.spool_max_mb): dropped the %d oldest unsent event(s), %d so far",
                        self.folder, dropped, self.dropped)
        seq = self.next_seq
        self.next_seq += 1
        path = self._path(seq)
        try:
            with open(path + ".part", "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(path + ".part", path)
        except OSError as exc:
            LOG.error("mqtt spool %s: cannot store an event (%s); it is sent only if the broker is reachable now",
                      self.folder, exc.strerror or exc)
            raise
        self._entries.append((seq, len(payload)))

    def oldest(self) -> Optional[Tuple[int, bytes]]:
        """(sequence, payload) of the oldest event, or None when the spool is empty."""
        while self._entries:
            seq = self._entries[0][0]
            try:
                with open(self._path(seq), "rb") as handle:
                    return seq, handle.read()
            except OSError as exc:
                LOG.warning("mqtt spool: event file %s unreadable (%s); skipped", self._path(seq), exc)
                self._entries.pop(0)
        return None

    def remove(self, seq: int) -> None:
        """Forget an event (after its PUBACK)."""
        self._entries = [entry for entry in self._entries if entry[0] != seq]
        try:
            os.remove(self._path(seq))
        except OSError:
            pass


def import_paho() -> Any:
    """paho.mqtt.client, or a one-line error saying how to install it."""
    try:
        import paho.mqtt.client as mqtt_client
    except ImportError:
        raise JetsonDetectError("mqtt: paho-mqtt is not installed; pip install 'jetson_detect[mqtt]' (or "
                                "paho-mqtt), or set mqtt.enabled: false") from None
    return mqtt_client


def make_client(paho: Any, client_id: str) -> Any:
    """A paho client on either API: 2.x wants a CallbackAPIVersion first, 1.6 has none."""
    version = getattr(paho, "CallbackAPIVersion", None)
    if version is not None:
        return paho.Client(version.VERSION2, client_id=client_id, clean_session=True)
    return paho.Client(client_id=client_id, clean_session=True)


def reason_failed(code: Any) -> bool:
    """True for a refused CONNACK: an int (paho 1.6) other than 0, or a 2.x ReasonCode that is a failure."""
    failure = getattr(code, "is_failure", None)
    if failure is not None:
        return bool(failure)
    return int(code) != 0


def reason_text(paho: Any, code: Any) -> str:
    if isinstance(code, int):
        return str(paho.connack_string(code))
    return str(code)


def read_password(path: str) -> str:
    try:
        with open(path, "r") as handle:
            return handle.readline().rstrip("\r\n")
    except (IOError, OSError) as exc:
        raise JetsonDetectError("config: mqtt.password_file: cannot read {} ({}); give a file holding the "
                                "password".format(path, exc.strerror or exc)) from None


class MqttPublisher(object):
    """Publishes one node's events, states, snapshots, stats and discovery; see the module docstring.

    ``listener`` goes to ``AlarmObserver.add_listener``; ``frame_observer(camera)`` to the pipeline's observers.
    """

    def __init__(self, mqtt_config: Dict[str, Any], cameras: Sequence[str], classes: Sequence[str],
                 events_dir: str, reconnect_min_s: float = 1.0, reconnect_max_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = mqtt_config
        self.cameras = list(cameras)
        self.classes = list(classes)
        self.events_dir = events_dir
        self.node = mqtt_config["node"]
        self.topics = Topics(mqtt_config["topic_prefix"], self.node)
        self.qos = int(mqtt_config["qos"])
        self.retain = bool(mqtt_config["retain"])
        self.clock = clock
        self.reconnect = (reconnect_min_s, reconnect_max_s)
        self.where = "{}:{}".format(mqtt_config["host"], mqtt_config["port"])
        spool_dir = mqtt_config["spool_dir"] or os.path.join(events_dir, "mqtt-spool")
        self.spool = EventSpool(spool_dir, int(float(mqtt_config["spool_max_mb"]) * 1024 * 1024))
        self._incoming: "queue.Queue[Dict[str, Any]]" = queue.Queue()  # unbounded: the loop never waits
        self._stats: Dict[str, Dict[str, Any]] = {}
        self._stats_lock = threading.Lock()
        self._open: Dict[Tuple[str, str], Set[str]] = {}  # (camera, class) -> open alarm ids
        self._retained: Dict[str, Any] = {}  # topic -> payload still to publish (newest wins)
        self._snapshots: List[Tuple[str, str, float]] = []  # (camera, path, give-up time)
        self._acked: Set[int] = set()
        self._ack_lock = threading.Condition()
        self._connected = threading.Event()
        self._announce = False
        self._inflight: Optional[Tuple[int, int, float]] = None  # (spool seq, mid, sent at)
        self._last_error: Optional[str] = None
        self._ever_connected = False
        self._stop = threading.Event()
        self._drain_until = 0.0  # set by stop(): how long the thread may still send what is spooled
        self._thread: Optional[threading.Thread] = None
        self._client: Any = None
        self._paho: Any = None
        self._last_stats = clock()
        self.published_events = 0

    # --- the loop's side: never blocks -------------------------------------------------------------------------

    def listener(self, event: Dict[str, Any]) -> None:
        """AlarmObserver listener: queue the event for the publisher thread."""
        self._incoming.put(event)

    def frame_observer(self, camera: str) -> Callable[..., None]:
        """A pipeline observer that keeps the newest stats of ``camera`` for the stats messages."""

        def observe(frame_bgr: Any, detections: Any, frame_index: int, stats: Any = None) -> None:
            if stats:
                with self._stats_lock:
                    self._stats[camera] = stats

        return observe

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> "MqttPublisher":
        """Connect in the background (the watch starts even when the broker is away) and start publishing."""
        paho = self._paho = import_paho()
        client_id = self.config["client_id"] or "jetson_detect-" + self.node
        client = self._client = make_client(paho, client_id)
        if self.config["username"] is not None:
            password = read_password(self.config["password_file"]) if self.config["password_file"] else None
            client.username_pw_set(self.config["username"], password)
        tls = self.config["tls"]
        if tls["enabled"]:
            client.tls_set(ca_certs=tls["ca_file"], certfile=tls["cert_file"], keyfile=tls["key_file"])
            client.tls_insecure_set(bool(tls["insecure"]))
        client.will_set(self.topics.available, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=self.reconnect[0], max_delay=self.reconnect[1])
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        for camera in self.cameras:
            for class_name in self.classes:
                self._open[(camera, class_name)] = set()
        client.connect_async(self.config["host"], int(self.config["port"]), int(self.config["keepalive_s"]))
        client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()
        LOG.info("mqtt: publishing to %s as %s (node %s, %d event(s) waiting in the spool)", self.where, client_id,
                 self.node, len(self.spool))
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (within ``timeout_s`` when the broker is there), then ``offline`` and disconnect."""
        if self._thread is None:
            return
        deadline = self.clock() + timeout_s
        self._drain_until = deadline
        self._stop.set()
        self._thread.join(max(0.1, timeout_s + 1.0))
        self._thread = None
        client = self._client
        if self._connected.is_set():
            info = client.publish(self.topics.available, "offline", qos=1, retain=True)
            self._wait_acked([info.mid], max(0.5, deadline - self.clock()))
        client.disconnect()
        client.loop_stop()
        if len(self.spool):
            LOG.warning("mqtt: %d event(s) not yet acknowledged stay in %s and are sent on the next start",
                        len(self.spool), self.spool.folder)

    # --- paho callbacks (paho's network thread); the same positional layout on both APIs ------------------------

    def _on_connect(self, *args: Any) -> None:
        code = args[3]
        if reason_failed(code):
            message = reason_text(self._paho, code)
            if message != self._last_error:
                LOG.error("mqtt: broker %s refused the connection (%s); check mqtt.username and mqtt.password_file "
                          "(events are kept in %s)", self.where, message, self.spool.folder)
                self._last_error = message
            return
        self._last_error = None
        LOG.info("mqtt: %s %s", "reconnected to" if self._ever_connected else "connected to", self.where)
        self._ever_connected = True
        self._announce = True
        self._connected.set()

    def _on_disconnect(self, *args: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._inflight = None  # sent again after the reconnect; the receiver deduplicates by event id
        if was and not self._stop.is_set():
            LOG.warning("mqtt: lost the connection to %s; events are spooled in %s and sent on reconnect",
                        self.where, self.spool.folder)

    def _on_publish(self, *args: Any) -> None:
        with self._ack_lock:
            self._acked.add(int(args[2]))
            self._ack_lock.notify_all()

    def _wait_acked(self, mids: Sequence[int], timeout_s: float) -> bool:
        deadline = self.clock() + timeout_s
        with self._ack_lock:
            while not all(mid in self._acked for mid in mids):
                left = deadline - self.clock()
                if left <= 0 or not self._connected.is_set():
                    return False
                self._ack_lock.wait(min(left, 0.1))
            self._acked.difference_update(mids)
        return True

    def _take_ack(self, mid: int) -> bool:
        with self._ack_lock:
            if mid in self._acked:
                self._acked.discard(mid)
                return True
        return False

    # --- the publisher thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._step()
            except Exception:  # a bug here must not end publishing for the rest of the run
                LOG.exception("mqtt publisher step failed")
            if self._stop.is_set():
                if not (self._connected.is_set() and (len(self.spool) or not self._incoming.empty())) \
                        or self.clock() >= self._drain_until:
                    self._step_intake()
                    return
            time.sleep(POLL_S)

    def _step(self) -> None:
        self._step_intake()
        if not self._connected.is_set():
            return
        if self._announce:
            self._announce = False
            self._publish_announcements()
        self._publish_retained()
        self._publish_snapshots()
        self._publish_next_event()
        if self.clock() - self._last_stats >= float(self.config["stats_interval_s"]):
            self._last_stats = self.clock()
            self._publish_stats()

    def _step_intake(self) -> None:
        while True:
            try:
                event = self._incoming.get_nowait()
            except queue.Empty:
                return
            self._take_event(event)

    def _take_event(self, event: Dict[str, Any]) -> None:
        message = dict(event, node=self.node)
        base = self.config["web_base_url"]
        for key in ("snapshot", "clip"):
            message[key + "_url"] = "{}/{}".format(base.rstrip("/"), event[key]) if base and event.get(key) else None
        try:
            self.spool.append(json.dumps(message, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        except OSError:
            return
        camera, class_name = str(event.get("camera")), str(event.get("class"))
        alarms = self._open.setdefault((camera, class_name), set())
        if event.get("type") == "end":
            alarms.discard(str(event.get("alarm_id")))
        else:
            alarms.add(str(event.get("alarm_id")))
        self._retained[self.topics.state(camera, class_name)] = "ON" if alarms else "OFF"
        self._retained[self.topics.camera(camera, "status")] = self._camera_status(camera)
        if event.get("type") == "new" and event.get("snapshot"):
            path = os.path.join(self.events_dir, str(event["snapshot"]))
            self._snapshots.append((camera, path, self.clock() + SNAPSHOT_WAIT_S))

    def _camera_status(self, camera: str) -> str:
        active = sorted(c for (cam, c), ids in self._open.items() if cam == camera and ids)
        with self._stats_lock:
            fps = (self._stats.get(camera) or {}).get("fps")
        return json.dumps({"state": "alarm" if active else "watching", "active": active, "fps": fps},
                          sort_keys=True)

    def _publish(self, topic: str, payload: Any, retain: bool, qos: Optional[int] = None) -> Any:
        return self._client.publish(topic, payload, qos=self.qos if qos is None else qos, retain=retain)

    def _publish_announcements(self) -> None:
        """On every connect: online, the discovery configs (removing those of cameras gone), every state."""
        self._publish(self.topics.available, "online", retain=True, qos=1)
        configs = discovery_configs(self.config, self.cameras, self.classes)
        record = os.path.join(self.spool.folder, ANNOUNCED_FILE)
        try:
            with open(record, "r") as handle:
                announced = set(json.load(handle))
        except (IOError, OSError, ValueError):
            announced = set()
        removed = sorted(announced - set(configs))
        mids = [self._publish(topic, b"", retain=True, qos=1).mid for topic in removed]
        for topic, payload in sorted(configs.items()):
            self._publish(topic, json.dumps(payload, sort_keys=True), retain=True, qos=1)
        if removed:
            LOG.info("mqtt: removed %d Home Assistant entit(ies) of cameras no longer configured", len(removed))
        if not removed or self._wait_acked(mids, 5.0):
            try:
                with open(record + ".part", "w") as handle:
                    json.dump(sorted(configs), handle)
                os.rename(record + ".part", record)
            except OSError as exc:
                LOG.warning("mqtt: cannot record the announced entities in %s (%s)", record, exc.strerror or exc)
        for camera in self.cameras:
            for class_name in self.classes:
                alarms = self._open.get((camera, class_name))
                self._retained[self.topics.state(camera, class_name)] = "ON" if alarms else "OFF"
            self._retained[self.topics.camera(camera, "status")] = self._camera_status(camera)

    def _publish_retained(self) -> None:
        pending, self._retained = self._retained, {}
        for topic, payload in pending.items():
            self._publish(topic, payload, retain=self.retain)

    def _publish_snapshots(self) -> None:
        waiting = []
        for camera, path, give_up in self._snapshots:
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except (IOError, OSError):
                if self.clock() < give_up:
                    waiting.append((camera, path, give_up))
                else:
                    LOG.warning("mqtt: snapshot %s never appeared (disk full?); not published", path)
                continue
            self._publish(self.topics.camera(camera, "snapshot"), data, retain=self.retain)
        self._snapshots = waiting

    def _publish_next_event(self) -> None:
        if self._inflight is not None:
            seq, mid, sent = self._inflight
            if self._take_ack(mid):
                self.spool.remove(seq)
                self.published_events += 1
                self._inflight = None
            elif self.clock() - sent < RESEND_AFTER_S:
                return
        oldest = self.spool.oldest()
        if oldest is None:
            return
        seq, payload = oldest
        info = self._publish(self.topics.events, payload, retain=False)
        if self.qos == 0:
            self.spool.remove(seq)  # QoS 0 has no acknowledgement: handing it to the socket is all there is
            self.published_events += 1
            return
        self._inflight = (seq, int(info.mid), self.clock())

    def _publish_stats(self) -> None:
        with self._stats_lock:
            per_camera = dict(self._stats)
        sample: Dict[str, Any] = {"cameras": {}, "node": self.node, "time": round(time.time(), 3),
                                  "spool": {"pending": len(self.spool), "dropped": self.spool.dropped}}
        inference = []
        telemetry: Dict[str, Any] = {}
        for camera, stats in per_camera.items():
            sample["cameras"][camera] = {"fps": stats.get("fps"), "frames": stats.get("frames"),
                                         "skipped": stats.get("skipped")}
            infer = (stats.get("stage_ms") or {}).get("infer")
            if infer is not None:
                inference.append(float(infer))
            telemetry = stats.get("telemetry") or telemetry
            if stats.get("fps") is not None:
                self._publish(self.topics.camera(camera, "fps"), "{:.1f}".format(stats["fps"]), retain=self.retain)
            self._publish(self.topics.camera(camera, "status"), self._camera_status(camera), retain=self.retain)
        temps = telemetry.get("temperatures_c") or {}
        sample.update(inference_ms=round(sum(inference) / len(inference), 2) if inference else None,
                      temperatures_c=temps, gpu_percent=telemetry.get("gpu_percent"))
        if inference:
            self._publish(self.topics.inference_ms, "{:.1f}".format(sample["inference_ms"]), retain=self.retain)
        if temps:
            self._publish(self.topics.temperature, "{:.1f}".format(max(temps.values())), retain=self.retain)
        try:
            usage = shutil.disk_usage(self.events_dir)
            free_percent = 100.0 * usage.free / max(usage.total, 1)
            sample["disk"] = {"path": self.events_dir, "free_mb": round(usage.free / 1048576.0, 1),
                              "free_percent": round(free_percent, 1)}
            self._publish(self.topics.disk_free, "{:.1f}".format(free_percent), retain=self.retain)
        except OSError:
            sample["disk"] = None
        self._publish(self.topics.stats, json.dumps(sample, sort_keys=True), retain=False, qos=0)


def create_mqtt_publisher(config: Dict[str, Any], cameras: Sequence[str],
                          classes: Sequence[str]) -> Optional[MqttPublisher]:
    """A started publisher for a validated config, or None when ``mqtt.enabled`` is false."""
    section = config.get("mqtt")
    if not section or not section["enabled"]:
        return None
    return MqttPublisher(section, cameras, classes, config["alarms"]["events_dir"]).start()
