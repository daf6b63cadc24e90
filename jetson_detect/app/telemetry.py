"""Telemetry sampled on its own thread: jetson-stats (``jtop``) on a Jetson, CPU/RAM/thermal zones from /proc elsewhere.

Every sample is one dict with the same keys whatever the source (``latest()``), plus a one-line ``summary()`` for
the overlay and the log. A temperature at or above ``throttle_temp_c`` raises a throttling warning once per episode.
jetson-stats is optional: on the Nano (Python 3.6) install it with ``sudo pip3 install 'jetson-stats<7'``.
"""

import glob
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

LOG = logging.getLogger(__name__)

Sample = Dict[str, Any]


def read_cpu_times(path: str = "/proc/stat") -> Tuple[int, int]:
    """(busy, total) jiffies of all CPUs from the first line of /proc/stat."""
    with open(path) as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def read_meminfo(path: str = "/proc/meminfo") -> Tuple[float, float]:
    """(used MB, total MB) from /proc/meminfo (used = total − available)."""
    values = {}
    with open(path) as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                values[name] = int(parts[0])
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable", values.get("MemFree", 0))
    return (total - available) / 1024.0, total / 1024.0


def read_thermal_zones(root: str = "/sys/class/thermal") -> Dict[str, float]:
    """Temperatures in °C by zone type from sysfs (Jetson zones are named e.g. GPU-therm, CPU-therm)."""
    temps = {}
    for zone in sorted(glob.glob(os.path.join(root, "thermal_zone*"))):
        try:
            with open(os.path.join(zone, "type")) as handle:
                name = handle.read().strip()
            with open(os.path.join(zone, "temp")) as handle:
                milli = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        if milli > -100000:  # offline sensors report large negative values
            temps[name] = milli / 1000.0
    return temps


def empty_sample(source: str) -> Sample:
    """A sample with every key present and no values."""
    return {"source": source, "time": time.time(), "cpu_percent": None, "ram_used_mb": None, "ram_total_mb": None,
            "gpu_percent": None, "temperatures_c": {}, "power_mw": None, "throttling": False}


class ProcSampler(object):
    """CPU load, RAM and thermal zones from /proc and /sys (any Linux machine)."""

    name = "proc"

    def __init__(self, proc_root: str = "/proc", thermal_root: str = "/sys/class/thermal") -> None:
        self.proc_root = proc_root
        self.thermal_root = thermal_root
        self.previous: Optional[Tuple[int, int]] = None

    def start(self) -> None:
        """Nothing to connect to; take a first CPU reading so the next sample has a delta."""
        self.previous = read_cpu_times(os.path.join(self.proc_root, "stat"))

    def sample(self) -> Sample:
        """One reading."""
        out = empty_sample(self.name)
        busy, total = read_cpu_times(os.path.join(self.proc_root, "stat"))
        if self.previous is not None and total > self.previous[1]:
            out["cpu_percent"] = round(100.0 * (busy - self.previous[0]) / (total - self.previous[1]), 1)
        self.previous = (busy, total)
        out["ram_used_mb"], out["ram_total_mb"] = [round(v, 1) for v in read_meminfo(
            os.path.join(self.proc_root, "meminfo"))]
        out["temperatures_c"] = read_thermal_zones(self.thermal_root)
        return out

    def close(self) -> None:
        """Nothing to release."""


class JtopSampler(object):
    """GPU load, temperatures, power and CPU/RAM from the jtop service (jetson-stats)."""

    name = "jtop"

    def __init__(self, interval_s: float) -> None:
        from jtop import jtop  # optional dependency: ImportError means "not a Jetson with jetson-stats"

        self.client = jtop(interval=interval_s)

    def start(self) -> None:
        """Connect to the jtop service (raises when it is not running or not permitted)."""
        self.client.start()

    def sample(self) -> Sample:
        """One reading from ``jetson.stats`` (keys differ per board, so everything is read with .get)."""
        stats = dict(self.client.stats)
        out = empty_sample(self.name)
        cpus = [float(v) for k, v in stats.items() if k.startswith("CPU") and isinstance(v, (int, float))]
        out["cpu_percent"] = round(sum(cpus) / len(cpus), 1) if cpus else None
        gpu = stats.get("GPU")
        out["gpu_percent"] = float(gpu) if isinstance(gpu, (int, float)) else None
        out["temperatures_c"] = {k[5:]: float(v) for k, v in stats.items()
                                 if k.startswith("Temp ") and isinstance(v, (int, float)) and v > -256}
        power = stats.get("Power TOT")
        out["power_mw"] = float(power) if isinstance(power, (int, float)) else None
        ram = stats.get("RAM")
        try:
            memory = self.client.memory["RAM"]
            out["ram_used_mb"] = round(float(memory["used"]) / 1024, 1)
            out["ram_total_mb"] = round(float(memory["tot"]) / 1024, 1)
        except Exception:  # the memory layout differs between jetson-stats versions; RAM may be a fraction
            if isinstance(ram, (int, float)) and 0 <= ram <= 1:
                out["ram_used_fraction"] = float(ram)
        return out

    def close(self) -> None:
        """Disconnect from the service."""
        try:
            self.client.close()
        except Exception:  # closing a half-started client must not break shutdown
            pass


def open_sampler(interval_s: float) -> Tuple[Any, Optional[str]]:
    """jtop when it imports and connects, else /proc; the second item says why there is no Jetson telemetry."""
    try:
        jtop_sampler = JtopSampler(interval_s)
        jtop_sampler.start()
        return jtop_sampler, None
    except ImportError:
        reason = "jetson-stats is not installed (on a Jetson: sudo pip3 install 'jetson-stats<7')"
    except Exception as exc:  # JtopException and OSError: service not running or no permission
        reason = "jtop service unavailable ({}; sudo systemctl restart jtop.service, add the user to group jtop)" \
            .format(" ".join(str(exc).split())[:160])
    sampler = ProcSampler()
    sampler.start()
    return sampler, reason


def hottest(temps: Dict[str, float]) -> Optional[Tuple[str, float]]:
    """(zone, °C) of the GPU zone when one is named so, else of the hottest zone; None without zones."""
    if not temps:
        return None
    gpu = [(k, v) for k, v in temps.items() if "gpu" in k.lower()]
    pool = gpu or list(temps.items())
    return max(pool, key=lambda item: item[1])


def summary(sample: Sample) -> str:
    """One short line, ASCII only (OpenCV's overlay font has no degree sign)."""
    parts: List[str] = []
    if sample.get("gpu_percent") is not None:
        parts.append("GPU {:.0f}%".format(sample["gpu_percent"]))
    if sample.get("cpu_percent") is not None:
        parts.append("CPU {:.0f}%".format(sample["cpu_percent"]))
    if sample.get("ram_total_mb"):
        parts.append("RAM {:.1f}/{:.1f} GB".format(sample["ram_used_mb"] / 1024, sample["ram_total_mb"] / 1024))
    hot = hottest(sample.get("temperatures_c") or {})
    if hot is not None:
        parts.append("{} {:.0f}C".format(hot[0], hot[1]))
    if sample.get("power_mw") is not None:
        parts.append("{:.1f} W".format(sample["power_mw"] / 1000.0))
    if sample.get("throttling"):
        parts.append("THROTTLING")
    return " | ".join(parts) if parts else "no telemetry"


class Telemetry(object):
    """Background sampler: ``start()``, ``latest()`` for the overlay/stats endpoint, ``stop()``."""

    def __init__(self, interval_s: float = 1.0, log_every_s: float = 60.0, throttle_temp_c: float = 85.0,
                 sampler: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.log_every_s = log_every_s
        self.throttle_temp_c = throttle_temp_c
        self.sampler = sampler
        self.clock = clock
        self.note: Optional[str] = None
        self._latest = empty_sample("none")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._last_log: Optional[float] = None
        self._throttling = False

    def start(self) -> "Telemetry":
        """Open the sampler (jtop or /proc) and begin sampling on a daemon thread."""
        if self.sampler is None:
            self.sampler, reason = open_sampler(self.interval_s)
            if reason is not None:
                self.note = "no Jetson telemetry: " + reason + "; showing CPU/RAM from /proc"
                LOG.info(self.note)
        else:
            self.sampler.start()
        self.poll()
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception as exc:  # telemetry must never take the detector down
                LOG.warning("telemetry sample failed (%s); keeping the last values", exc)

    def poll(self) -> Sample:
        """Take one sample now, mark throttling, log when due; return it."""
        sample = self.sampler.sample()
        hot = hottest(sample["temperatures_c"])
        sample["throttling"] = hot is not None and hot[1] >= self.throttle_temp_c
        if hot is not None and sample["throttling"] and not self._throttling:
            LOG.warning("thermal throttling likely: %s at %.0f C (>= telemetry.throttle_temp_c %.0f); "
                        "improve cooling (fan, heatsink) or lower the load (fp16, smaller --img-size)",
                        hot[0], hot[1], self.throttle_temp_c)
        elif self._throttling and not sample["throttling"]:
            LOG.info("temperature back below %.0f C", self.throttle_temp_c)
        self._throttling = sample["throttling"]
        with self._lock:
            self._latest = sample
        now = self.clock()
        if self.log_every_s > 0 and (self._last_log is None or now - self._last_log >= self.log_every_s):
            self._last_log = now
            LOG.info("telemetry (%s): %s", sample["source"], summary(sample))
        return sample

    def latest(self) -> Sample:
        """The newest sample (a copy)."""
        with self._lock:
            return dict(self._latest)

    def summary(self) -> str:
        """The newest sample as one line."""
        return summary(self.latest())

    def stop(self) -> None:
        """Stop sampling and release the sampler."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + 1.0)
        if self.sampler is not None:
            self.sampler.close()


def create_telemetry(config: Dict[str, Any]) -> Optional[Telemetry]:
    """A started Telemetry for a validated config, or None when ``telemetry.enabled`` is false."""
    section = config["telemetry"]
    if not section["enabled"]:
        return None
    return Telemetry(section["interval_s"], section["log_every_s"], section["throttle_temp_c"]).start()
