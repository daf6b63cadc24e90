"""Telemetry: /proc and sysfs readings, the jtop path with a stand-in client, throttling warnings, fallback note."""

import logging
import sys
import time
import types

from jetson_detect.app import telemetry
from jetson_detect.app.telemetry import (
    JtopSampler,
    ProcSampler,
    Telemetry,
    open_sampler,
    summary,
)


def fake_proc(root, busy, idle):
    root.mkdir(exist_ok=True)
    # user nice system idle iowait irq softirq steal
    (root / "stat").write_text("cpu  {} 0 0 {} 0 0 0 0 0 0\ncpu0 1 2 3 4\n".format(busy, idle))
    (root / "meminfo").write_text("MemTotal:        4096000 kB\nMemFree:          100000 kB\n"
                                  "MemAvailable:    1024000 kB\n")


def fake_thermal(root, zones):
    for index, (name, milli) in enumerate(zones):
        zone = root / "thermal_zone{}".format(index)
        zone.mkdir(parents=True)
        (zone / "type").write_text(name + "\n")
        (zone / "temp").write_text("{}\n".format(milli))


def test_proc_sampler_reads_cpu_load_ram_and_thermal_zones(tmp_path):
    proc, thermal = tmp_path / "proc", tmp_path / "thermal"
    fake_proc(proc, busy=100, idle=900)
    fake_thermal(thermal, [("CPU-therm", 41500), ("GPU-therm", 39000), ("PMIC-Die", -256000)])
    sampler = ProcSampler(str(proc), str(thermal))
    sampler.start()
    fake_proc(proc, busy=400, idle=1000)  # +300 busy of +400 total
    sample = sampler.sample()
    assert sample["source"] == "proc"
    assert sample["cpu_percent"] == 75.0
    assert (sample["ram_used_mb"], sample["ram_total_mb"]) == (3000.0, 4000.0)
    assert sample["temperatures_c"] == {"CPU-therm": 41.5, "GPU-therm": 39.0}  # offline sensor left out
    assert sample["gpu_percent"] is None


def test_summary_line_prefers_the_gpu_zone_and_shows_power():
    sample = {"gpu_percent": 87.0, "cpu_percent": 40.0, "ram_used_mb": 2048.0, "ram_total_mb": 4096.0,
              "temperatures_c": {"CPU": 55.0, "GPU": 52.5, "PLL": 60.0}, "power_mw": 5123.0, "throttling": False}
    assert summary(sample) == "GPU 87% | CPU 40% | RAM 2.0/4.0 GB | GPU 52C | 5.1 W"


class ScriptedSampler(object):
    name = "scripted"

    def __init__(self, temps):
        self.temps = list(temps)

    def start(self):
        pass

    def sample(self):
        out = telemetry.empty_sample(self.name)
        out["temperatures_c"] = {"GPU": self.temps.pop(0)}
        return out

    def close(self):
        pass


def test_throttling_warning_once_per_hot_episode(caplog):
    caplog.set_level(logging.INFO, logger="jetson_detect.app.telemetry")
    monitor = Telemetry(interval_s=60, log_every_s=0, throttle_temp_c=80, sampler=ScriptedSampler(
        [70, 81, 85, 90, 75, 82]))
    flags = [monitor.poll()["throttling"] for _ in range(6)]
    assert flags == [False, True, True, True, False, True]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith("thermal throttling likely: GPU at 81 C (>= telemetry.throttle_temp_c 80)")
    assert monitor.latest()["throttling"] is True
    assert monitor.summary() == "GPU 82C | THROTTLING"


def test_background_thread_keeps_sampling_until_stopped():
    sampler = ScriptedSampler([50.0] * 1000)
    monitor = Telemetry(interval_s=0.1, log_every_s=0, sampler=sampler).start()
    time.sleep(0.55)
    monitor.stop()
    taken = 1000 - len(sampler.temps)
    time.sleep(0.3)
    assert 4 <= taken <= 8
    assert 1000 - len(sampler.temps) == taken  # nothing after stop()


def test_without_jetson_stats_one_note_and_proc_fallback(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)  # import jtop raises ImportError
    sampler, reason = open_sampler(1.0)
    assert isinstance(sampler, ProcSampler)
    assert reason == "jetson-stats is not installed (on a Jetson: sudo pip3 install 'jetson-stats<7')"


def test_jtop_service_down_falls_back_with_the_reason(monkeypatch):
    class DownClient(object):
        def __init__(self, interval):
            pass

        def start(self):
            raise RuntimeError("The jtop.service is not active. Please run:\nsudo systemctl restart jtop.service")

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=DownClient))
    sampler, reason = open_sampler(1.0)
    assert isinstance(sampler, ProcSampler)
    assert reason.startswith("jtop service unavailable (The jtop.service is not active. Please run: sudo systemctl")


def test_telemetry_start_logs_the_no_jetson_note_once(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="jetson_detect.app.telemetry")
    monkeypatch.setitem(sys.modules, "jtop", None)
    monitor = Telemetry(interval_s=0.05, log_every_s=0).start()
    time.sleep(0.2)
    monitor.stop()
    notes = [r.getMessage() for r in caplog.records if "no Jetson telemetry" in r.getMessage()]
    assert notes == ["no Jetson telemetry: jetson-stats is not installed (on a Jetson: sudo pip3 install "
                     "'jetson-stats<7'); showing CPU/RAM from /proc"]
    assert monitor.latest()["source"] == "proc"


def test_jtop_stats_are_mapped_to_the_common_keys(monkeypatch):
    class NanoClient(object):
        def __init__(self, interval):
            self.interval = interval
            self.stats = {"time": 0, "CPU1": 30, "CPU2": 50, "CPU3": "OFF", "CPU4": 40, "RAM": 0.5, "GPU": 64,
                          "Temp AO": 45.5, "Temp CPU": 41.0, "Temp GPU": 39.5, "Temp PLL": -256,
                          "Power TOT": 4321, "Power CPU": 800, "nvp model": "MAXN"}
            self.memory = {"RAM": {"tot": 4059648, "used": 2029824}}

        def start(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=NanoClient))
    sampler, reason = open_sampler(0.5)
    assert reason is None and isinstance(sampler, JtopSampler)
    sample = sampler.sample()
    assert sample["source"] == "jtop"
    assert sample["cpu_percent"] == 40.0
    assert sample["gpu_percent"] == 64.0
    assert sample["temperatures_c"] == {"AO": 45.5, "CPU": 41.0, "GPU": 39.5}
    assert sample["power_mw"] == 4321.0
    assert (sample["ram_used_mb"], sample["ram_total_mb"]) == (1982.2, 3964.5)
