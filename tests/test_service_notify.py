"""systemd notifications on a real Unix datagram socket: READY=1, WATCHDOG=1 (rate-limited), STOPPING=1."""

import os
import socket
import time
import uuid

import numpy as np
import pytest

from jetson_detect.app.service import ServiceNotifier, notify_address, sd_notify, watchdog_interval_s


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield path, sock
    sock.close()


def received(sock):
    """Every datagram waiting on the socket."""
    out = []
    sock.settimeout(0.2)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except socket.timeout:
        return out


class StepClock(object):
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_watchdog_message_arrives_on_the_socket(notify_socket):
    path, sock = notify_socket
    assert sd_notify("WATCHDOG=1", path) is True
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_abstract_namespace_socket_written_with_at_sign():
    name = "jetson-detect-test-{}".format(uuid.uuid4().hex)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        assert sd_notify("READY=1", "@" + name) is True
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_notify_address_translation():
    assert notify_address("@abc") == "\0abc"
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("") is None
    assert notify_address(None) is None


def test_outside_systemd_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False
    assert ServiceNotifier(watchdog_s=1.0).watchdog() is False


def test_dead_socket_is_reported_not_raised(tmp_path, caplog):
    assert sd_notify("WATCHDOG=1", str(tmp_path / "gone.sock")) is False
    assert "WATCHDOG=1" in caplog.text


def test_observer_sends_ready_on_first_frame_then_rate_limited_watchdog(notify_socket):
    path, sock = notify_socket
    clock = StepClock()
    notifier = ServiceNotifier(socket_value=path, watchdog_s=5.0, clock=clock)
    frame = np.zeros((4, 4, 3), np.uint8)
    for step in range(12):  # one frame per second for 12 s
        notifier.observer(frame, None, step, {})
        clock.t += 1.0
    notifier.stopping()
    assert received(sock) == ["READY=1\nSTATUS=processing frames", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1",
                              "STOPPING=1"]  # pings at t = 0, 5, 10


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid():
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval_s({}) is None


def test_without_watchdog_usec_no_pings_are_sent(notify_socket):
    path, sock = notify_socket
    notifier = ServiceNotifier(socket_value=path, watchdog_s=None)
    notifier.watchdog_s = None
    assert notifier.watchdog() is False
    assert notifier.ready() is True
    assert received(sock) == ["READY=1\nSTATUS=running"]


def test_notifier_reads_notify_socket_and_watchdog_usec_from_environment(notify_socket, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = ServiceNotifier()
    assert (notifier.active, notifier.watchdog_s) == (True, 1.0)
    assert notifier.watchdog() is True
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_a_receiver_that_stopped_reading_never_blocks_the_sender(notify_socket):
    path, sock = notify_socket
    started = time.monotonic()
    results = [sd_notify("WATCHDOG=1", path) for _ in range(200)]
    assert time.monotonic() - started < 2.0
    assert results[0] is True and results[-1] is False  # the socket queue filled up; later pings are dropped
