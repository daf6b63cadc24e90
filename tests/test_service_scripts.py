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


def run_help():
    done = subprocess.run([sys.executable, "-m", "jetson_detect", "run", "--help"], cwd=str(REPO),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=60, text=True)
    return done.stdout if done.returncode == 0 else ""


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_real_demo_serves_the_web_view_and_stops_on_ctrl_c(tmp_path):
    """The demo with the real run command on a fire/smoke video: the printed URL answers, Ctrl-C exits 0."""
    import urllib.request

    import cv2

    help_text = run_help()
    assert "--config" in help_text and "--events-dir" in help_text
    images = sorted((REPO.parent / "shared" / "data" / "fire_smoke" / "images").glob("*.jpg"))[:30]
    video = tmp_path / "fire.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for _ in range(20):
        for image in images:
            writer.write(cv2.resize(cv2.imread(str(image)), (320, 240)))
    writer.release()
    port = free_port()
    demo = subprocess.Popen(["bash", str(DEMO), "--source", str(video), "--backend", "onnxruntime", "--img-size",
                             "320", "--events-dir", str(tmp_path / "events")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(os.environ, PORT=str(port)), start_new_session=True,
                            text=True)
    try:
        first = demo.stdout.readline()
        assert first.startswith("fire/smoke watch: open http://") and ":{}/".format(port) in first
        page = None
        deadline = time.monotonic() + 60
        while page is None and time.monotonic() < deadline and demo.poll() is None:
            try:
                page = urllib.request.urlopen("http://127.0.0.1:{}/".format(port), timeout=2).read()
            except OSError:
                time.sleep(0.3)
        assert page is not None and b"<" in page
        os.killpg(demo.pid, signal.SIGINT)
        rest = demo.communicate(timeout=20)[0]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode == 0, rest[-2000:]
    assert "fire/smoke watch stopped (exit code 0)" in rest
