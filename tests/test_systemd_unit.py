"""The systemd unit: verified by systemd-analyze, Type=notify with a watchdog, non-root, sandboxed but with devices."""

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "jetson-detect.service"


def service_section():
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_systemd_analyze_verify_passes_without_warnings():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (Debian: apt-get install -y systemd)")
    done = subprocess.run([tool, "verify", str(UNIT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    output = done.stdout.decode()
    assert done.returncode == 0, output
    assert UNIT.name not in output, output  # unknown keys are only warnings: none allowed


def test_unit_is_notify_type_with_watchdog_and_restart():
    service = service_section()
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert int(service["WatchdogSec"]) >= 10
    assert service["ExecStart"].startswith("/usr/bin/python3 -m jetson_detect --config ${JETSON_DETECT_CONFIG}")


def test_unit_runs_as_dedicated_user_in_video_group():
    service = service_section()
    assert service["User"] == "jetson-detect"
    assert service["User"] != "root"
    assert "video" in service["SupplementaryGroups"].split()


def test_sandbox_keeps_devices_and_makes_only_state_and_cache_writable():
    service = service_section()
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert "PrivateDevices" not in service and "DevicePolicy" not in service  # /dev/video*, /dev/nv* stay reachable
    assert set(service["ReadWritePaths"].split()) == {"/var/lib/jetson-detect", "/var/cache/jetson-detect"}
    assert service["EnvironmentFile"] == "-/etc/default/jetson-detect"


def test_a_bad_config_stops_the_restarts():
    from jetson_detect.errors import EXIT_BAD_CONFIG

    service = service_section()
    assert service["RestartPreventExitStatus"].split() == [str(EXIT_BAD_CONFIG)]
