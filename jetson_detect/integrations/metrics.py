"""Prometheus metrics for ``/metrics``, made with prometheus_client (an optional extra: ``pip install
'jetson_detect[metrics]'``; 0.17.1 is its last release for Python 3.6) in a registry of their own.

Counters come from what is observed: every FrameResult (frames, detections by camera and class), every stage
timing (histograms), and the events file (alarms raised by camera and class, read incrementally at each scrape, so
the count matches ``events.jsonl``). Gauges and the pipeline's own totals (skipped, dropped, reconnects) come from the
latest status snapshot (the web app's ``/api/stats``), set at each scrape.
"""

import json
import os
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..app.alarms import EVENTS_FILE
from .web_events import DEFAULT_CAMERA, START_KINDS

STAGE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def create_metrics(events_dir: Optional[str] = None) -> Optional["Metrics"]:
    """A Metrics, or None when prometheus_client is not installed (``/metrics`` then says how to get it)."""
    try:
        return Metrics(events_dir)
    except ImportError:
        return None


class EventCounter(object):
    """Alarms raised per (camera, class), counted from the events file; each scrape reads only what was added."""

    def __init__(self) -> None:
        self.path: Optional[str] = None
        self.offset = 0
        self.counts: Dict[Tuple[str, str], int] = {}

    def update(self, path: Optional[str]) -> Dict[Tuple[str, str], int]:
        if path != self.path:
            self.path, self.offset, self.counts = path, 0, {}
        if path is None:
            return self.counts
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self.offset:  # the file was replaced or truncated: count it again
                    self.offset, self.counts = 0, {}
                handle.seek(self.offset)
                data = handle.read(size - self.offset)
        except OSError:
            return self.counts
        complete = data[:data.rfind(b"\n") + 1]  # a line still being written is read next time
        self.offset += len(complete)
        for line in complete.splitlines():
            try:
                record = json.loads(line.decode("utf-8"))
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("type", record.get("event")) in START_KINDS:
                key = (str(record.get("camera") or DEFAULT_CAMERA), str(record.get("class", "")))
                self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts


class Metrics(object):
    """Observes FrameResults, stage timings and status snapshots; ``exposition()`` is the text Prometheus scrapes."""

    def __init__(self, events_dir: Optional[str] = None) -> None:
        import prometheus_client  # ImportError when the extra is missing: see create_metrics
        from prometheus_client import core
        self._client: Any = prometheus_client
        self._core: Any = core
        self.events_dir = events_dir
        self.registry = prometheus_client.CollectorRegistry(auto_describe=False)
        self.frames = prometheus_client.Counter("jetson_detect_frames", "Frames processed", ["camera"],
                                                registry=self.registry)
        self.detections = prometheus_client.Counter("jetson_detect_detections", "Detections reported",
                                                    ["camera", "class"], registry=self.registry)
        self.stage_seconds = prometheus_client.Histogram("jetson_detect_stage_seconds", "Time per frame in a "
                                                         "pipeline stage", ["stage"], buckets=STAGE_BUCKETS_S,
                                                         registry=self.registry)
        self.status: Dict[str, Any] = {}
        self.events = EventCounter()
        self._events_lock = threading.Lock()  # two scrapes at once must not read the same new lines twice
        self.registry.register(self)

    def observe(self, result: Any) -> None:
        """One processed frame: count it and its detections by class."""
        camera = str(getattr(result, "camera", DEFAULT_CAMERA))
        self.frames.labels(camera).inc()
        names = result.names
        for class_id in result.detections.class_ids:
            cid = int(class_id)
            self.detections.labels(camera, names[cid] if 0 <= cid < len(names) else str(cid)).inc()

    def observe_stage(self, stage: str, ms: float) -> None:
        """One stage timing of one frame (or batch), in milliseconds as the pipeline measures them."""
        self.stage_seconds.labels(stage).observe(ms / 1000.0)

    def observe_status(self, status: Dict[str, Any]) -> None:
        """The latest status snapshot (the web app's ``/api/stats``): what the gauges show until the next one."""
        self.status = status

    def exposition(self) -> Tuple[bytes, str]:
        """The text format and its content type."""
        return self._client.generate_latest(self.registry), self._client.CONTENT_TYPE_LATEST

    def describe(self) -> List[Any]:
        return []  # names vary with the status; nothing to check against the registry's others

    def collect(self) -> Iterator[Any]:
        """The metrics taken from the status snapshot and the events file (called by the registry)."""
        core = self._core
        status = self.status
        cameras = [c for c in status.get("cameras", []) if isinstance(c, dict)]
        for name, help_text, key in (("skipped_frames", "Frames skipped (not detected on)", "skipped"),
                                     ("dropped_frames", "Captured frames dropped as stale", "dropped"),
                                     ("reconnects", "Source reconnects", "reconnects")):
            family = core.CounterMetricFamily("jetson_detect_" + name, help_text, labels=["camera"])
            for cam in cameras:
                if isinstance(cam.get(key), (int, float)):
                    family.add_metric([str(cam["name"])], float(cam[key]))
            yield family
        fps = core.GaugeMetricFamily("jetson_detect_camera_fps", "Frames per second per camera", labels=["camera"])
        up = core.GaugeMetricFamily("jetson_detect_camera_up", "1 when the camera's status is ok", labels=["camera"])
        alarm = core.GaugeMetricFamily("jetson_detect_alarm_active", "1 while an alarm is raised",
                                       labels=["camera", "class"])
        for cam in cameras:
            if isinstance(cam.get("fps"), (int, float)):
                fps.add_metric([str(cam["name"])], float(cam["fps"]))
            up.add_metric([str(cam["name"])], 1.0 if cam.get("status") == "ok" else 0.0)
            for class_name in cam.get("alarms", []):
                alarm.add_metric([str(cam["name"]), str(class_name)], 1.0)
        yield fps
        yield up
        yield alarm
        telemetry = status.get("telemetry") or {}
        temps = core.GaugeMetricFamily("jetson_detect_temperature_celsius", "Temperature per sensor",
                                       labels=["sensor"])
        for sensor, value in sorted((telemetry.get("temperatures_c") or {}).items()):
            if isinstance(value, (int, float)):
                temps.add_metric([str(sensor)], float(value))
        yield temps
        for name, help_text, key in (("gpu_load_percent", "GPU load", "gpu_percent"),
                                     ("cpu_load_percent", "CPU load, all cores", "cpu_percent"),
                                     ("ram_used_megabytes", "RAM in use", "ram_used_mb")):
            if isinstance(telemetry.get(key), (int, float)):
                yield core.GaugeMetricFamily("jetson_detect_" + name, help_text, value=float(telemetry[key]))
        disk = status.get("disk") or {}
        for name, key in (("disk_free_bytes", "free_bytes"), ("disk_total_bytes", "total_bytes")):
            if isinstance(disk.get(key), (int, float)):
                family = core.GaugeMetricFamily("jetson_detect_" + name, "Disk of the events folder",
                                                labels=["path"])
                family.add_metric([str(disk.get("path", ""))], float(disk[key]))
                yield family
        path = os.path.join(self.events_dir, EVENTS_FILE) if self.events_dir else None
        events = core.CounterMetricFamily("jetson_detect_events", "Alarms raised", labels=["camera", "class"])
        with self._events_lock:
            counts = sorted(self.events.update(path).items())
        for (camera, class_name), count in counts:
            events.add_metric([camera, class_name], float(count))
        yield events
