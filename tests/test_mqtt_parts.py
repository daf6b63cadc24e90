"""MQTT parts that need no broker: the spool's bounds and restart, both paho APIs, the config section, track ids
in the JSON lines and the overlay."""

import json
import types

import numpy as np
import pytest

from jetson_detect.app.config import validate_config
from jetson_detect.app.tracker import TrackedDetections
from jetson_detect.errors import JetsonDetectError
from jetson_detect.integrations.mqtt import EventSpool, discovery_configs, make_client, reason_failed, reason_text
from jetson_detect.video.draw import draw_detections
from jetson_detect.video.sinks import detection_record


def test_spool_keeps_events_in_order_and_across_a_restart(tmp_path):
    spool = EventSpool(str(tmp_path), 10000)
    for number in range(3):
        spool.append(json.dumps({"id": number}).encode())
    reopened = EventSpool(str(tmp_path), 10000)
    seq, payload = reopened.oldest()
    assert len(reopened) == 3 and json.loads(payload.decode()) == {"id": 0}
    reopened.remove(seq)
    reopened.append(b'{"id": 3}')
    order = []
    while reopened.oldest() is not None:
        seq, payload = reopened.oldest()
        order.append(json.loads(payload.decode())["id"])
        reopened.remove(seq)
    assert order == [1, 2, 3]


def test_spool_drops_the_oldest_only_at_its_limit_and_counts_them(tmp_path):
    spool = EventSpool(str(tmp_path), 100)
    for number in range(10):
        spool.append("{:020d}".format(number).encode())  # 20 bytes each: five fit
    assert len(spool) == 5 and spool.dropped == 5
    assert spool.oldest()[1] == "{:020d}".format(5).encode()


class FakePaho16(object):
    """paho-mqtt 1.6's surface as used here: no CallbackAPIVersion, int CONNACK codes."""

    def __init__(self):
        self.made = []

    def Client(self, *args, **kwargs):  # noqa: N802 (paho's name)
        self.made.append((args, kwargs))
        return "client"

    @staticmethod
    def connack_string(code):
        return {5: "Connection Refused: not authorised."}[code]


def test_paho_16_clients_get_no_callback_api_version_and_2x_clients_get_version2():
    old = FakePaho16()
    assert make_client(old, "jd") == "client" and old.made == [((), {"client_id": "jd", "clean_session": True})]
    new = FakePaho16()
    new.CallbackAPIVersion = types.SimpleNamespace(VERSION2="v2")
    make_client(new, "jd")
    assert new.made == [(("v2",), {"client_id": "jd", "clean_session": True})]


def test_connack_codes_of_both_apis_read_as_failures_with_their_text():
    assert reason_failed(0) is False and reason_failed(5) is True
    assert reason_text(FakePaho16(), 5) == "Connection Refused: not authorised."
    code_2x = types.SimpleNamespace(is_failure=True)  # paho 2.x: a ReasonCode object
    assert reason_failed(code_2x) is True


@pytest.mark.parametrize("mqtt, message", [
    ({"topic_prefix": "jd/#"}, "mqtt.topic_prefix: 'jd/#' is not a topic prefix"),
    ({"node": "my nano"}, "mqtt.node: 'my nano' is not allowed; expected letters, digits, _ and - only"),
    ({"password_file": "/x"}, "mqtt.password_file: set without mqtt.username"),
    ({"qos": 3}, "mqtt.qos: 3 is not allowed; allowed values: 0, 1, 2"),
    ({"tls": {"verify": True}}, "mqtt.tls.verify: unknown key; allowed keys: enabled, ca_file, cert_file"),
])
def test_a_bad_mqtt_section_is_one_line_naming_the_key(mqtt, message):
    with pytest.raises(JetsonDetectError) as caught:
        validate_config({"mqtt": mqtt})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_node_defaults_to_the_host_name_made_topic_safe():
    node = validate_config({})["mqtt"]["node"]
    assert node and all(c.isalnum() or c in "_-" for c in node)


def test_no_discovery_without_a_discovery_prefix():
    section = validate_config({"mqtt": {"node": "n", "discovery_prefix": None}})["mqtt"]
    assert discovery_configs(section, ["cam0"], ["fire"]) == {}


def tracked_fire():
    return TrackedDetections(np.array([[20, 30, 60, 70]], np.float32), np.array([0.9], np.float32),
                             np.array([0], np.int32), np.array([3], np.int64))


def test_json_lines_carry_the_track_id_of_each_detection():
    record = detection_record("cam.mp4", 4, 160, 120, tracked_fire(), ["fire", "smoke"])
    assert record["detections"] == [{"class_id": 0, "class_name": "fire", "confidence": 0.9,
                                     "box": [20.0, 30.0, 60.0, 70.0], "track_id": 3}]


def test_the_overlay_label_names_the_track():
    tracked = draw_detections(np.zeros((120, 160, 3), np.uint8), tracked_fire(), ["fire", "smoke"])
    plain_detections = TrackedDetections(tracked_fire().boxes, tracked_fire().scores, tracked_fire().class_ids,
                                         np.array([3], np.int64))
    plain_detections.track_ids = None
    plain = draw_detections(np.zeros((120, 160, 3), np.uint8), plain_detections, ["fire", "smoke"])
    label_row_tracked = np.flatnonzero(tracked[10:30].any(axis=2).any(axis=0))
    label_row_plain = np.flatnonzero(plain[10:30].any(axis=2).any(axis=0))
    # "fire #3 0.90" is a wider label than "fire 0.90"
    assert label_row_tracked.max() > label_row_plain.max() + 10
