"""The SSH demo script (URL printed, clean stop on Ctrl-C) and the idempotent service installer (--root mode)."""

import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jetson_detect.app.config import load_config

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "scripts" / "fire_smoke_demo.sh"
INSTALL = REPO / "scripts" / "install_service.sh"

FAKE_DETECTOR = '''#!{python}
import signal, sys, time
open({record!r}, "w").write("\\n".join(sys.argv[1:]))
def stop(signum, frame):
    open({record!r} + ".signal", "w").write(str(signum))
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("fake detector serving", flush=True)
time.sleep(60)
sys.exit(3)
'''


def read_until(stream, text, timeout_s=10.0):
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError("{!r} not seen in {!r}".format(text, "".join(seen)))


def test_demo_prints_the_url_and_stops_cleanly_on_ctrl_c(tmp_path):
    record = tmp_path / "argv.txt"
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_DETECTOR.format(python=sys.executable, record=str(record)))
    fake.chmod(0o755)
    env = dict(os.environ, PYTHON=str(fake), PORT="8123")
    demo = subprocess.Popen(["bash", str(DEMO), "--source", "clip.mp4"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True, text=True)
    try:
        head = read_until(demo.stdout, "fake detector serving")
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the whole foreground group
        rest = demo.communicate(timeout=10)[0]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode == 0
    url_line = head.splitlines()[0]
    assert url_line.startswith("fire/smoke watch: open http://")
    assert url_line.endswith(":8123/ in a browser on your laptop (same network). Ctrl-C stops it.")
    assert "fire/smoke watch stopped (exit code 0)" in rest
    assert record.read_text().splitlines() == ["-m", "jetson_detect", "--config", "configs/fire_smoke.yaml",
                                               "--output", "http://0.0.0.0:8123", "--source", "clip.mp4"]
    assert (tmp_path / "argv.txt.signal").read_text() == str(int(signal.SIGTERM))


def test_demo_passes_on_the_detector_exit_code(tmp_path):
    fake = tmp_path / "fake_python"
    fake.write_text("#!/bin/sh\nexit 4\n")
    fake.chmod(0o755)
    done = subprocess.run(["bash", str(DEMO)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=dict(os.environ, PYTHON=str(fake)), timeout=30, text=True)
    assert done.returncode == 4
    assert done.stdout.splitlines()[-1] == "fire/smoke watch stopped (exit code 4)"


def install(root):
    return subprocess.run(["bash", str(INSTALL), "--root", str(root)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=120, text=True)


def test_installer_lays_out_app_config_and_unit(tmp_path):
    done = install(tmp_path)
    assert done.returncode == 0, done.stdout
    assert (tmp_path / "opt/jetson-detect/jetson_detect/app/alarms.py").is_file()
    assert not list((tmp_path / "opt/jetson-detect").rglob("__pycache__"))
    assert filecmp.cmp(str(tmp_path / "etc/systemd/system/jetson-detect.service"),
                       str(REPO / "systemd/jetson-detect.service"), shallow=False)
    config = load_config(str(tmp_path / "etc/jetson-detect/config.yaml"))
    assert config["alarms"]["events_dir"] == "/var/lib/jetson-detect/events"
    assert config["model"]["engine_cache"] == "/var/cache/jetson-detect/engines"
    assert sorted(config["alarms"]["rules"]) == ["fire", "smoke"]
    assert "JETSON_DETECT_CONFIG=/etc/jetson-detect/config.yaml" in (tmp_path / "etc/default/jetson-detect").read_text()


def test_installer_run_twice_keeps_the_edited_config_and_updates_the_app(tmp_path):
    assert install(tmp_path).returncode == 0
    config = tmp_path / "etc/jetson-detect/config.yaml"
    config.write_text(config.read_text().replace("source: csi://0", "source: rtsp://cam/stream"))
    stale = tmp_path / "opt/jetson-detect/jetson_detect/stale_module.py"
    stale.write_text("")
    second = install(tmp_path)
    assert second.returncode == 0, second.stdout
    assert "wrote" not in second.stdout  # config and environment files already existed
    assert load_config(str(config))["source"] == "rtsp://cam/stream"
    assert not stale.exists()


def test_installer_refuses_without_root_outside_root_mode():
    argv = ["bash", str(INSTALL)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing: cannot drop to an ordinary user")
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + argv
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stdout.startswith("install_service.sh: run as root (sudo ")
