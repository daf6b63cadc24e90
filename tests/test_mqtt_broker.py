"""MQTT against a real broker: Debian's mosquitto, started here on 127.0.0.1 and a free port (.ci/run installs it).

Availability with the last will on SIGKILL; the events of a fire video (CPU backend, the shipped fire/smoke weights)
as new → update → end; Home Assistant discovery configs with the keys its documentation requires, and their removal;
every event, in order, once per id across a broker restart at QoS 1; a wrong password as one log line while the
watch runs on.
"""

import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.app.config import validate_config
from jetson_detect.app.service import run_watch
from jetson_detect.integrations.mqtt import MqttPublisher
from jetson_detect.math.nms import Detections

REPO = Path(__file__).resolve().parents[1]
FIRE_IMAGE = REPO.parent / "shared" / "data" / "fire_smoke" / "images" / "fire-image_16.jpg"


def _find(name):
    found = shutil.which(name)
    if found is None and os.access("/usr/sbin/" + name, os.X_OK):
        found = "/usr/sbin/" + name
    return found


MOSQUITTO = _find("mosquitto")
MOSQUITTO_PASSWD = _find("mosquitto_passwd")
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (.ci/run installs Debian's "
                                                          "mosquitto)")
paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is a dev dependency: pip install -e '.[dev]'")


def wait_for(condition, timeout_s=10.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker(object):
    """mosquitto on 127.0.0.1:port, persistent across restarts (so a subscriber's QoS 1 queue survives them)."""

    def __init__(self, folder, password_file=None):
        self.port = free_port()
        self.folder = folder
        self.conf = folder / "mosquitto.conf"
        # started as root, mosquitto would switch to user "mosquitto", who cannot read pytest's private tmp folder
        lines = ["listener {} 127.0.0.1".format(self.port), "user " + pwd.getpwuid(os.getuid()).pw_name,
                 "persistence true",
                 "persistence_location {}/".format(folder), "log_dest stderr"]
        if password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", "password_file {}".format(password_file)]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(str(self.folder / "broker.log"), "ab"))

        def listening():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(listening, 5.0, "mosquitto to listen")
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def broker(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    running = Broker(folder).start()
    yield running
    running.stop()


class Subscriber(object):
    """A test-side client that records (topic, payload, retained) of everything under the given filters."""

    def __init__(self, port, filters, client_id=None):
        self.messages = []
        self.lock = threading.Lock()
        self.filters = filters
        self.subscribed = threading.Event()
        version = getattr(paho, "CallbackAPIVersion", None)
        persistent = client_id is not None
        kwargs = dict(client_id=client_id or "", clean_session=not persistent)
        self.client = paho.Client(version.VERSION2, **kwargs) if version is not None else paho.Client(**kwargs)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port, 10)
        self.client.loop_start()

    def _on_connect(self, client, *args):
        client.subscribe([(f, 1) for f in self.filters])
        self.subscribed.set()

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic):
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def events(self):
        return [json.loads(p.decode()) for p in self.on("jd/node1/events")]

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def mqtt_section(port, spool_dir, **over):
    section = {"enabled": True, "host": "127.0.0.1", "port": port, "topic_prefix": "jd", "node": "node1",
               "spool_dir": str(spool_dir), "stats_interval_s": 1, "keepalive_s": 5}
    section.update(over)
    return validate_config({"mqtt": section})["mqtt"]


def event(number, kind="new", camera="cam0"):
    return {"id": "e{:03d}".format(number), "alarm_id": "e001", "type": kind, "camera": camera, "class": "fire",
            "snapshot": None, "clip": None}


KILLED_CHILD = textwrap.dedent("""
    import sys, time
    from jetson_detect.app.config import validate_config
    from jetson_detect.integrations.mqtt import MqttPublisher
    section = validate_config({"mqtt": {"enabled": True, "port": int(sys.argv[1]), "node": "node1",
                                        "topic_prefix": "jd", "spool_dir": sys.argv[2], "keepalive_s": 60}})["mqtt"]
    publisher = MqttPublisher(section, ["cam0"], ["fire"], sys.argv[2]).start()
    while not publisher._connected.is_set():
        time.sleep(0.02)
    print("connected", flush=True)
    time.sleep(60)
""")


def test_availability_is_online_while_running_and_offline_by_last_will_on_sigkill(broker, tmp_path):
    watcher = Subscriber(broker.port, ["jd/node1/available"])
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(broker.port), str(tmp_path / "spool")],
                             stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert child.stdout.readline().strip() == b"connected"
        wait_for(lambda: watcher.on("jd/node1/available") == [b"online"], what="online")
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        wait_for(lambda: watcher.on("jd/node1/available")[-1:] == [b"offline"], what="the last will")
    finally:
        if child.poll() is None:
            child.kill()
        watcher.close()
    late = Subscriber(broker.port, ["jd/node1/available"])
    wait_for(lambda: late.on("jd/node1/available") == [b"offline"], what="retained offline")
    late.close()


def test_clean_stop_publishes_offline_retained(broker, tmp_path):
    publisher = MqttPublisher(mqtt_section(broker.port, tmp_path / "spool"), ["cam0"], ["fire"], str(tmp_path))
    publisher.start()
    watcher = Subscriber(broker.port, ["jd/node1/available"])
    wait_for(lambda: watcher.on("jd/node1/available")[-1:] == [b"online"], what="online")
    publisher.stop()
    wait_for(lambda: watcher.on("jd/node1/available")[-1:] == [b"offline"], what="offline")
    watcher.close()


def test_every_event_arrives_in_order_once_per_id_across_a_broker_restart(broker, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="jetson_detect")
    receiver = Subscriber(broker.port, ["jd/node1/events"], client_id="receiver")  # persistent session, QoS 1
    receiver.subscribed.wait(5)
    publisher = MqttPublisher(mqtt_section(broker.port, tmp_path / "spool"), ["cam0"], ["fire"], str(tmp_path),
                              reconnect_min_s=0.1, reconnect_max_s=0.5)
    publisher.start()
    sent = []
    for number in range(1, 31):
        if number == 11:
            wait_for(lambda: len(receiver.events()) >= 5, what="the first events")
            broker.stop()
        if number == 21:
            broker.start()
        publisher.listener(event(number, "update"))
        sent.append("e{:03d}".format(number))
        time.sleep(0.01)
    wait_for(lambda: {e["id"] for e in receiver.events()} == set(sent), 20.0, "every event")
    publisher.stop()
    receiver.close()
    first_seen = []
    for item in receiver.events():
        if item["id"] not in first_seen:
            first_seen.append(item["id"])
    assert first_seen == sent
    assert len(publisher.spool) == 0 and publisher.spool.dropped == 0
    said = [r.getMessage() for r in caplog.records if r.name == "jetson_detect.integrations.mqtt"]
    assert any(m.startswith("mqtt: lost the connection") for m in said)  # the outage really happened mid-run
    assert any(m.startswith("mqtt: reconnected to") for m in said)


def test_events_spooled_while_the_broker_is_away_at_start_are_sent_when_it_comes(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    late_broker = Broker(folder)
    publisher = MqttPublisher(mqtt_section(late_broker.port, tmp_path / "spool"), ["cam0"], ["fire"],
                              str(tmp_path), reconnect_min_s=0.1, reconnect_max_s=0.3)
    publisher.start()
    for number in range(1, 4):
        publisher.listener(event(number))
    wait_for(lambda: len(publisher.spool) == 3, what="the spool")
    late_broker.start()
    try:
        receiver = Subscriber(late_broker.port, ["jd/node1/events"])
        receiver.subscribed.wait(5)
        wait_for(lambda: publisher.published_events == 3, what="publishing")
        publisher.stop()
        receiver.close()
    finally:
        late_broker.stop()
    assert len(publisher.spool) == 0


# Home Assistant's documented MQTT discovery schema, per platform (required keys; checked 2026-12):
#   https://www.home-assistant.io/integrations/mqtt/ (discovery: <prefix>/<component>/<object_id>/config, an empty
#       retained payload removes the entity; entities are grouped into a device by `device.identifiers`, which needs
#       a `unique_id`)
#   https://www.home-assistant.io/integrations/binary_sensor.mqtt/ (state_topic required; payload_on/off)
#   https://www.home-assistant.io/integrations/image.mqtt/ (image_topic or url_topic, exactly one, required;
#       content_type for image_topic)
#   https://www.home-assistant.io/integrations/sensor.mqtt/ (state_topic required)
REQUIRED = {"binary_sensor": {"state_topic"}, "sensor": {"state_topic"}, "image": {"image_topic", "content_type"}}
EVERY_ENTITY = {"unique_id", "availability_topic", "device", "name"}


def discovered(subscriber):
    with subscriber.lock:
        latest = {}
        for topic, payload, _ in subscriber.messages:
            latest[topic] = payload
    return latest


def test_discovery_configs_are_valid_json_with_the_required_keys_and_removed_with_their_camera(broker, tmp_path):
    spool = tmp_path / "spool"
    watcher = Subscriber(broker.port, ["homeassistant/#"])
    publisher = MqttPublisher(mqtt_section(broker.port, spool), ["garage", "yard"], ["fire", "smoke"], str(tmp_path))
    publisher.start()
    wait_for(lambda: len(discovered(watcher)) == 11, what="11 discovery configs")
    publisher.stop()
    configs = {topic: json.loads(payload.decode()) for topic, payload in discovered(watcher).items()}
    components = {}
    for topic, config in configs.items():
        prefix, component, object_id, leaf = topic.split("/")
        assert (prefix, leaf) == ("homeassistant", "config") and object_id.startswith("node1_")
        assert REQUIRED[component] <= set(config) and EVERY_ENTITY <= set(config), topic
        assert config["unique_id"] == object_id and config["availability_topic"] == "jd/node1/available"
        assert config["device"]["identifiers"] == ["jetson_detect_node1"]
        components.setdefault(component, []).append(object_id)
    assert sorted(components["binary_sensor"]) == ["node1_garage_fire", "node1_garage_smoke", "node1_yard_fire",
                                                   "node1_yard_smoke"]
    assert sorted(components["image"]) == ["node1_garage_snapshot", "node1_yard_snapshot"]
    assert sorted(components["sensor"]) == ["node1_disk_free", "node1_garage_fps", "node1_inference_ms",
                                            "node1_temperature", "node1_yard_fps"]
    smoke = configs["homeassistant/binary_sensor/node1_garage_smoke/config"]
    fire = configs["homeassistant/binary_sensor/node1_garage_fire/config"]
    assert smoke["device_class"] == "smoke" and fire["device_class"] == "heat"
    assert fire["state_topic"] == "jd/node1/garage/fire"
    assert configs["homeassistant/image/node1_yard_snapshot/config"]["image_topic"] == "jd/node1/yard/snapshot"

    # The yard camera is removed from the config: its four entities get an empty retained config.
    publisher = MqttPublisher(mqtt_section(broker.port, spool), ["garage"], ["fire", "smoke"], str(tmp_path))
    publisher.start()
    yard = sorted(t for t in configs if "_yard_" in t)
    wait_for(lambda: all(discovered(watcher).get(t) == b"" for t in yard), what="the yard configs removed")
    publisher.stop()
    watcher.close()
    fresh = Subscriber(broker.port, ["homeassistant/#"])
    wait_for(lambda: len(discovered(fresh)) == 7, what="the retained configs")
    time.sleep(0.3)  # a stale retained yard config would arrive with the others
    assert sorted(discovered(fresh)) == sorted(t for t in configs if "_yard_" not in t)
    fresh.close()


def write_fire_video(path, frames_fire, frames_quiet):
    """A short video: a real fire photo with a few pixels of jitter per frame, then black frames."""
    image = cv2.resize(cv2.imread(str(FIRE_IMAGE)), (640, 480))
    rng = np.random.RandomState(1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
    for _ in range(frames_fire):
        dx, dy = rng.randint(-3, 4, 2)
        writer.write(cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (640, 480)))
    for _ in range(frames_quiet):
        writer.write(np.zeros((480, 640, 3), np.uint8))
    writer.release()
    return path


def watch_config(tmp_path, video, mqtt, **alarms):
    section = {"enabled": True, "events_dir": str(tmp_path / "events"), "confirm": "track", "update_every_s": 0.001,
               "storage": {"min_free_mb": 0},
               "rules": {"fire": {"raise_after": 2, "window": 3, "clear_after_s": 0, "min_confidence": 0.3,
                                  "cooldown_s": 0}, "smoke": {"min_confidence": 0.99}}}
    section.update(alarms)
    return validate_config({"source": str(video), "alarms": section, "mqtt": mqtt,
                            "telemetry": {"enabled": False}})


def test_the_events_of_a_fire_video_arrive_as_new_update_end_with_camera_class_and_snapshot(broker, tmp_path):
    from jetson_detect.backends.detector import create_detector

    detector = create_detector(weights=str(REPO / "weights" / "fire_smoke_yolov5n.pt"), backend="onnxruntime",
                               img_size=640)
    video = write_fire_video(tmp_path / "fire.avi", 6, 3)
    watcher = Subscriber(broker.port, ["jd/node1/#"])
    watcher.subscribed.wait(5)
    mqtt = {"enabled": True, "host": "127.0.0.1", "port": broker.port, "topic_prefix": "jd", "node": "node1",
            "spool_dir": str(tmp_path / "spool"), "web_base_url": "http://nano.local:8080/events/"}
    summary = run_watch(watch_config(tmp_path, video, mqtt), detector, note=lambda message: None)
    assert summary["frames"] == 9
    wait_for(lambda: watcher.events() and watcher.events()[-1]["type"] == "end", what="the end event")
    events = watcher.events()
    types = [e["type"] for e in events]
    assert types[0] == "new" and types[-1] == "end" and set(types[1:-1]) == {"update"}, types
    assert {(e["camera"], e["class"], e["track_id"], e["node"]) for e in events} == {("cam0", "fire", 1, "node1")}
    assert len({e["id"] for e in events}) == len(events)
    assert events[0]["snapshot_url"] == "http://nano.local:8080/events/" + events[0]["snapshot"]
    wait_for(lambda: watcher.on("jd/node1/cam0/snapshot"), what="the snapshot")
    jpeg = cv2.imdecode(np.frombuffer(watcher.on("jd/node1/cam0/snapshot")[-1], np.uint8), cv2.IMREAD_COLOR)
    assert jpeg.shape == (480, 640, 3)
    assert watcher.on("jd/node1/cam0/fire")[-2:] == [b"ON", b"OFF"]
    watcher.close()


class SlowEmptyDetector(object):
    """No detections, 20 ms a frame: long enough for the broker to answer the login while the watch runs."""

    names = ["fire", "smoke"]

    def __init__(self):
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        time.sleep(0.02)
        return Detections.empty()


@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is not installed (Debian's mosquitto)")
def test_a_wrong_password_is_one_log_line_and_the_watch_runs_on(tmp_path, caplog):
    folder = tmp_path / "broker"
    folder.mkdir()
    passwords = folder / "passwords"
    subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(passwords), "nano", "right-secret"], check=True)
    secured = Broker(folder, password_file=passwords).start()
    wrong = tmp_path / "password.txt"
    wrong.write_text("wrong-secret\n")
    video = write_fire_video(tmp_path / "quiet.avi", 0, 40)
    mqtt = {"enabled": True, "host": "127.0.0.1", "port": secured.port, "node": "node1", "username": "nano",
            "password_file": str(wrong), "spool_dir": str(tmp_path / "spool")}
    detector = SlowEmptyDetector()
    try:
        with caplog.at_level(logging.INFO, logger="jetson_detect"):
            summary = run_watch(watch_config(tmp_path, video, mqtt), detector, note=lambda message: None)
    finally:
        secured.stop()
    assert summary["frames"] == detector.calls == 40
    errors = [r.getMessage() for r in caplog.records if r.name == "jetson_detect.integrations.mqtt"
              and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "refused the connection" in errors[0] and "mqtt.password_file" in errors[0]


def test_with_two_cameras_each_camera_s_events_and_state_arrive_under_its_own_name(broker, tmp_path):
    from jetson_detect.backends.detector import create_detector

    detector = create_detector(weights=str(REPO / "weights" / "fire_smoke_yolov5n.pt"), backend="onnxruntime",
                               img_size=320, batch=2)
    fire = write_fire_video(tmp_path / "fire.avi", 6, 3)
    quiet = write_fire_video(tmp_path / "quiet.avi", 0, 9)
    watcher = Subscriber(broker.port, ["jd/node1/#"])
    watcher.subscribed.wait(5)
    mqtt = {"enabled": True, "host": "127.0.0.1", "port": broker.port, "topic_prefix": "jd", "node": "node1",
            "spool_dir": str(tmp_path / "spool")}
    config = watch_config(tmp_path, fire, mqtt)
    config["source"] = None
    config["cameras"] = [{"name": "yard", "source": str(quiet)}, {"name": "gate", "source": str(fire)}]
    summary = run_watch(validate_config(config), detector, note=lambda message: None)
    assert [(c["name"], c["frames"]) for c in summary["cameras"]] == [("yard", 9), ("gate", 9)]
    wait_for(lambda: watcher.events() and watcher.events()[-1]["type"] == "end", what="the end event")
    assert {(e["camera"], e["class"]) for e in watcher.events()} == {("gate", "fire")}
    wait_for(lambda: watcher.on("jd/node1/gate/fire")[-2:] == [b"ON", b"OFF"], what="gate's fire state")
    assert b"ON" not in watcher.on("jd/node1/yard/fire")
    watcher.close()
