"""The web app in a real browser (headless Chromium over the DevTools pipe) and its metrics after a real run.

The grid shows every camera's frames and an alarm on its tile and in the title; the events page, after a real
CPU-backend run of the fire/smoke model on a fire video, shows the event's snapshot and plays its clip; the token
is enforced on pages, API and media alike; ``/metrics`` counts what the JSON-lines log says.
"""

import json
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from chromium_cdp import Chromium, chromium_path
from prometheus_client.parser import text_string_to_metric_families

from jetson_detect.app.alarms import EVENTS_FILE, create_alarm_observer
from jetson_detect.app.config import validate_config
from jetson_detect.app.pipeline import Pipeline
from jetson_detect.integrations.web import WebApp
from jetson_detect.math.nms import Detections
from jetson_detect.video.draw import draw_detections
from jetson_detect.video.sinks import JsonlSink, Sink
from jetson_detect.video.sources import OpenCVSource

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIRE_SMOKE = SHARED / "data" / "fire_smoke"
COCO = SHARED / "data" / "coco64"
ARTIFACTS = REPO / "artifacts"
TOKEN = "t0k3n"
FRAME_W, FRAME_H = 320, 240
QUIET, FIRE = 5, 8

pytestmark = pytest.mark.shared


def needs_chromium():
    if chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does)")


def labelled(image_path):
    """The photo with its dataset boxes drawn, as a camera of the watch would show it."""
    image = cv2.imread(str(image_path))
    label = image_path.parent.parent / "labels" / (image_path.stem + ".txt")
    rows = [[float(v) for v in line.split()] for line in label.read_text().splitlines() if line.strip()] \
        if label.exists() else []
    height, width = image.shape[:2]
    boxes = np.array([[(r[1] - r[3] / 2) * width, (r[2] - r[4] / 2) * height, (r[1] + r[3] / 2) * width,
                       (r[2] + r[4] / 2) * height] for r in rows], np.float32).reshape(-1, 4)
    detections = Detections(boxes, np.full(len(rows), 0.9, np.float32), np.array([r[0] for r in rows], np.int32))
    return draw_detections(image, detections, ["fire", "smoke"])


def only_class(class_id, count):
    found = []
    for label in sorted((FIRE_SMOKE / "labels").glob("*.txt")):
        classes = {int(line.split()[0]) for line in label.read_text().splitlines() if line.strip()}
        if classes == {class_id} and (FIRE_SMOKE / "images" / (label.stem + ".jpg")).exists():
            found.append(FIRE_SMOKE / "images" / (label.stem + ".jpg"))
        if len(found) == count:
            return found
    raise AssertionError("not enough images of class {}".format(class_id))


def test_the_grid_shows_every_camera_live_and_an_alarm_on_its_tile_and_in_the_title(tmp_path):
    needs_chromium()
    pictures = {"yard": labelled(only_class(0, 1)[0]), "gate": labelled(only_class(1, 1)[0]),
                "street": cv2.imread(str(sorted((COCO / "images").glob("*.jpg"))[1]))}
    pictures = dict((name, cv2.resize(image, (640, 480))) for name, image in pictures.items())
    status = {"cameras": [{"name": name, "source": "rtsp://10.0.0.{}/live".format(i + 2), "live": True,
                           "status": "ok", "fps": 5.0, "detect_fps": 5}
                          for i, name in enumerate(pictures)],
              "alarms": {"yard": {"active": ["fire"]}}}
    app = WebApp("127.0.0.1", 0, token=TOKEN, status=lambda: status)
    stop = threading.Event()

    def cameras():  # three fake cameras at 10 frames/s each
        while not stop.is_set():
            for name, image in pictures.items():
                app.publish(image, camera=name)
            time.sleep(0.1)

    feeder = threading.Thread(target=cameras, daemon=True)
    feeder.start()
    browser = Chromium(tmp_path / "profile", width=1280, height=800)
    try:
        browser.goto(app.url)
        shown = browser.wait_for("(function(){var i=document.querySelectorAll('.tile img');"
                                 "if(i.length<3)return null;for(var k=0;k<3;k++)if(!i[k].naturalWidth)return null;"
                                 "return Array.prototype.map.call(i,function(e){var r=e.getBoundingClientRect();"
                                 "return [e.alt,r.left,r.top,r.width,r.height,e.naturalWidth];});})()")
        assert shown and [s[0] for s in shown] == ["yard", "gate", "street"], shown
        assert all(s[5] == 640 for s in shown)
        alarm = browser.evaluate("[document.title,document.querySelector('.tile.alarmed .alarm').textContent,"
                                 "document.querySelectorAll('.tile.alarmed').length,"
                                 "getComputedStyle(document.querySelector('.tile.alarmed')).borderTopColor]")
        assert alarm == ["FIRE - jetson_detect", "FIRE", 1, "rgb(255, 0, 0)"]
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "web_grid.png"
        browser.screenshot(shot)
        screenshot = cv2.imread(str(shot))
        for name, left, top, width, height, _ in shown:  # each tile shows its own camera's picture
            crop = screenshot[int(top) + 1:int(top + height) - 1, int(left) + 1:int(left + width) - 1]
            expected = cv2.resize(pictures[name], (crop.shape[1], crop.shape[0]))
            own = np.abs(crop.astype(np.float32) - expected).mean()
            others = [np.abs(crop.astype(np.float32) - cv2.resize(p, (crop.shape[1], crop.shape[0]))).mean()
                      for other, p in pictures.items() if other != name]
            if name == "yard":  # the alarm label covers the top of this tile
                own = np.abs(crop[60:].astype(np.float32) - expected[60:]).mean()
                others = [np.abs(crop[60:].astype(np.float32) - cv2.resize(
                    p, (crop.shape[1], crop.shape[0]))[60:]).mean() for other, p in pictures.items() if other != name]
            assert own < 20 and own < min(others) / 2, (name, own, others)  # resampled JPEG vs the original
        status["alarms"] = {"yard": {"active": []}}  # the alarm clears: the page says so within a poll or two
        assert browser.wait_for("document.title==='jetson_detect' && !document.querySelector('.tile.alarmed')")
        browser.goto(app.url.replace("/?", "/camera/gate?"))
        assert browser.wait_for("document.getElementById('view').naturalWidth") == 640
        browser.goto(app.url.replace("/?", "/health?"))
        health = browser.wait_for("(function(){var c=document.getElementById('cams').rows;"
                                  "return c.length===4?[c[1].cells[0].textContent,c[1].cells[1].textContent,"
                                  "document.getElementById('system').textContent.indexOf('disk free')>=0]:null;})()")
        assert health == ["yard", "ok", True]
    finally:
        browser.close()
        stop.set()
        feeder.join(2)
        app.close()


class KeepServing(Sink):
    """The web app as the run's sink, left serving when the run closes its sinks (the browser looks afterwards)."""

    def __init__(self, app):
        self.app = app

    def write(self, result):
        self.app.write(result)


def test_past_four_cameras_the_grid_refreshes_still_frames_for_each(tmp_path):
    """A browser keeps about six connections per server: five MJPEG streams would starve the page's own polls."""
    needs_chromium()
    names = ["cam{}".format(i) for i in range(5)]
    app = WebApp("127.0.0.1", 0, status=lambda: {"cameras": [{"name": n, "status": "ok"} for n in names]})
    photos = sorted((COCO / "images").glob("*.jpg"))
    for name, photo in zip(names, photos):
        app.publish(cv2.resize(cv2.imread(str(photo)), (FRAME_W, FRAME_H)), camera=name)
    browser = Chromium(tmp_path / "profile", width=1280, height=800)
    try:
        browser.goto(app.url)
        shown = browser.wait_for("(function(){var i=document.querySelectorAll('.tile img');if(i.length<5)return null;"
                                 "for(var k=0;k<5;k++)if(!i[k].naturalWidth)return null;"
                                 "return Array.prototype.map.call(i,function(e){return e.src.split('?')[0];});})()")
        assert shown == ["{}camera/{}/frame.jpg".format(app.url, name) for name in names]
        assert app.viewer_count() == 0  # no MJPEG stream open
    finally:
        browser.close()
        app.close()


@pytest.fixture(scope="module")
def fire_run(tmp_path_factory):
    """A real run: the fire/smoke model (CPU backend) on a video of quiet frames, fire frames and quiet frames,
    with alarms (snapshots and clips), the JSON-lines log and the web app with its metrics."""
    from jetson_detect.backends.detector import create_detector
    root = tmp_path_factory.mktemp("fire_run")
    quiet = sorted((COCO / "images").glob("*.jpg"))[:2 * QUIET]
    video = root / "fire.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (FRAME_W, FRAME_H))
    for path in quiet[:QUIET] + only_class(0, FIRE) + quiet[QUIET:]:
        writer.write(cv2.resize(cv2.imread(str(path)), (FRAME_W, FRAME_H)))
    writer.release()
    detector = create_detector(weights=str(REPO / "weights" / "fire_smoke_yolov5n.pt"), backend="onnxruntime",
                               img_size=320)
    events_dir = root / "events"
    config = validate_config({"alarms": {
        "enabled": True, "events_dir": str(events_dir), "rules": {"fire": {}, "smoke": {}},
        "rule_defaults": {"raise_after": 3, "window": 5, "clear_after_s": 0.0, "cooldown_s": 0.0,
                          "min_confidence": 0.25},
        "clip": {"enabled": True, "before_s": 1.0, "after_s": 1.0, "fps": 10, "max_width": 320},
        "storage": {"min_free_mb": 0}}})
    observer = create_alarm_observer(config, detector.names)
    app = WebApp("127.0.0.1", 0, token=TOKEN, events_dir=str(events_dir))
    log = root / "detections.jsonl"
    pipeline = Pipeline(detector, OpenCVSource(str(video), str(video)), [KeepServing(app), JsonlSink(str(log))],
                        observers=[observer], note=lambda message: None)
    record_stage = pipeline.stats.record_stage

    def record_and_observe(stage, ms):  # how the pipeline feeds the stage histograms
        record_stage(stage, ms)
        app.metrics.observe_stage(stage, ms)

    pipeline.stats.record_stage = record_and_observe
    try:
        summary = pipeline.run()
    finally:
        observer.close()
    yield {"app": app, "log": log, "events_dir": events_dir, "summary": summary, "frames": 2 * QUIET + FIRE}
    app.close()


def test_metrics_after_a_real_run_equal_the_json_lines_counts(fire_run):
    app, records = fire_run["app"], [json.loads(line) for line in fire_run["log"].read_text().splitlines()]
    assert len(records) == fire_run["frames"]
    request = urllib.request.Request("http://127.0.0.1:{}/metrics".format(app.port),
                                     headers={"Authorization": "Bearer " + TOKEN})
    text = urllib.request.urlopen(request, timeout=10).read().decode("utf-8")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("jetson_detect_frames_total", (("camera", "cam0"),))] == len(records)
    by_class = {}
    for record in records:
        for detection in record["detections"]:
            by_class[detection["class_name"]] = by_class.get(detection["class_name"], 0) + 1
    assert by_class.get("fire", 0) > 0
    got = dict((labels[1][1], value) for (name, labels), value in samples.items()
               if name == "jetson_detect_detections_total")
    assert got == by_class
    raises = [json.loads(line) for line in (fire_run["events_dir"] / EVENTS_FILE).read_text().splitlines()]
    raises = [e for e in raises if e["event"] == "raise"]
    assert raises and raises[0]["class"] == "fire"
    got_events = dict((labels[1][1], value) for (name, labels), value in samples.items()
                      if name == "jetson_detect_events_total")
    expected_events = {}
    for event in raises:
        expected_events[event["class"]] = expected_events.get(event["class"], 0) + 1
    assert got_events == expected_events
    for stage in ("preprocess", "infer", "output"):
        assert samples[("jetson_detect_stage_seconds_count", (("stage", stage),))] == len(records)


def test_the_events_page_shows_the_fire_events_snapshot_and_plays_its_clip(fire_run, tmp_path):
    needs_chromium()
    app = fire_run["app"]
    event = json.loads(urllib.request.urlopen(app.url.replace("/?", "/api/events?"), timeout=10).read())["events"][0]
    assert event["class"] == "fire" and event["clip_url"].endswith(".webm") and event["snapshot_url"]
    browser = Chromium(tmp_path / "profile", width=1000, height=700)
    try:
        browser.goto(app.url.replace("/?", "/events?"))
        snapshot = browser.wait_for("(function(){var i=document.querySelector('.event img');"
                                    "return i&&i.complete&&i.naturalWidth?[i.naturalWidth,i.naturalHeight]:null;})()")
        assert snapshot == [FRAME_W, FRAME_H]
        listed = browser.evaluate("document.querySelector('.event').textContent")
        assert "FIRE on cam0" in listed and "confidence {:.2f}".format(event["confidence"]) in listed
        playing = browser.wait_for("(function(){var v=document.querySelector('.event video');if(!v)return null;"
                                   "if(v.paused)v.play().catch(function(){});"
                                   "return v.readyState>=2&&v.currentTime>0?[v.readyState,v.videoWidth,"
                                   "v.videoHeight,v.error]:null;})()")
        assert playing and playing[0] >= 2 and playing[1:] == [FRAME_W, FRAME_H, None], playing
        # without the token the browser gets nothing: page, API and media alike
        statuses = browser.evaluate("Promise.all(['/events','/api/events','{}','{}','/metrics'].map(function(p){{"
                                    "return fetch(p).then(function(r){{return r.status;}});}}))".format(
                                        event["snapshot_url"], event["clip_url"]))
        assert statuses == [403] * 5
    finally:
        browser.close()


def test_a_vp8_clip_in_matroska_as_jetpacks_gstreamer_writes_it_also_plays(tmp_path):
    """JetPack's OpenCV writes ``.webm`` through GStreamer as Matroska (not the WebM doctype) with vp8enc; the page
    must play that too. Written here with FFmpeg's Matroska muxer, the same container and codec."""
    needs_chromium()
    events_dir = tmp_path / "events"
    (events_dir / "clips").mkdir(parents=True)
    matroska = tmp_path / "clip.mkv"
    writer = cv2.VideoWriter(str(matroska), cv2.VideoWriter_fourcc(*"VP80"), 10.0, (FRAME_W, FRAME_H))
    for path in only_class(0, 10):
        writer.write(cv2.resize(cv2.imread(str(path)), (FRAME_W, FRAME_H)))
    writer.release()
    data = matroska.read_bytes()
    assert b"matroska" in data[:64] and b"webm" not in data[:64]
    (events_dir / "clips" / "e1.webm").write_bytes(data)
    (events_dir / EVENTS_FILE).write_text(json.dumps({"event": "raise", "id": "e1", "class": "fire",
                                                      "clip": "clips/e1.webm"}) + "\n")
    app = WebApp("127.0.0.1", 0, events_dir=str(events_dir))
    browser = Chromium(tmp_path / "profile", width=800, height=600)
    try:
        browser.goto(app.url + "events")
        playing = browser.wait_for("(function(){var v=document.querySelector('.event video');if(!v)return null;"
                                   "if(v.paused)v.play().catch(function(){});"
                                   "return v.readyState>=2&&v.currentTime>0?v.videoWidth:null;})()")
        assert playing == FRAME_W
    finally:
        browser.close()
        app.close()
