"""Alarm observer outputs: JSONL events, snapshots, clips, hooks (with timeout), rotation, and a full disk."""

import errno
import json
import os
import shlex
import sys
import time
import uuid

import cv2
import numpy as np
import pytest

from jetson_detect.app.alarms import EVENTS_FILE, MAX_HOOK_OUTPUT_BYTES, AlarmObserver, EventLog, HookRunner, MediaStore
from jetson_detect.app.config import validate_config
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.nms import Detections

from conftest import fill_disk

NAMES = ["fire", "smoke"]
FIRE_HIT = Detections(np.array([[40, 30, 120, 90]], np.float32), np.array([0.87], np.float32),
                      np.array([0], np.int32))
NOTHING = Detections.empty()


class FakeClock(object):
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def alarms_section(events_dir, **over):
    section = {"enabled": True, "events_dir": str(events_dir),
               "rules": {"fire": {"raise_after": 2, "window": 3, "clear_after_s": 1.0, "cooldown_s": 0.0,
                                  "min_confidence": 0.5}},
               "storage": {"min_free_mb": 0}}
    section.update(over)
    return validate_config({"alarms": section})["alarms"]


def frame(value=60):
    image = np.full((120, 160, 3), value, np.uint8)
    image[:, :, 1] = np.arange(160, dtype=np.uint8)[None, :]
    return image


def feed(observer, clock, sequence, step_s=0.125, start_index=0):  # 1/8 s: exact in binary floating point
    for offset, detections in enumerate(sequence):
        observer(frame(), detections, start_index + offset, {"fps": 10.0})
        clock.t += step_s


def read_events(events_dir):
    with open(os.path.join(str(events_dir), EVENTS_FILE), "rb") as handle:
        raw = handle.read()
    assert raw.endswith(b"\n") or raw == b""
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


@pytest.fixture
def clock():
    return FakeClock()


def test_raise_writes_one_event_line_with_time_class_confidence_boxes_frame(tmp_path, clock):
    observer = AlarmObserver(alarms_section(tmp_path), NAMES, clock=clock, wall_clock=lambda: 1767225600.25)
    feed(observer, clock, [NOTHING, FIRE_HIT, FIRE_HIT, FIRE_HIT])
    observer.close()
    events = read_events(tmp_path)
    assert events == [{
        "event": "raise", "type": "new", "id": "20260101T000000-cam0-2-fire-1",
        "alarm_id": "20260101T000000-cam0-2-fire-1", "camera": "cam0", "time": "2026-01-01T00:00:00.250Z",
        "unix_time": 1767225600.25, "class": "fire", "class_id": 0, "frame": 2, "track_id": None,
        "confidence": 0.87, "max_confidence": 0.87, "box": [40.0, 30.0, 120.0, 90.0],
        "boxes": [[40.0, 30.0, 120.0, 90.0, 0.87]], "start_time": "2026-01-01T00:00:00.250Z", "end_time": None,
        "stationary": False, "snapshot": "snapshots/20260101T000000-cam0-2-fire-1.jpg", "clip": None}]


def test_snapshot_is_a_jpeg_of_the_frame_with_the_box_drawn(tmp_path, clock):
    observer = AlarmObserver(alarms_section(tmp_path), NAMES, clock=clock)
    feed(observer, clock, [FIRE_HIT, FIRE_HIT])
    observer.close()
    event = read_events(tmp_path)[0]
    snapshot = cv2.imread(str(tmp_path / event["snapshot"]))
    assert snapshot.shape == (120, 160, 3)
    edge_red = snapshot[40:80, 40, 2].astype(int).mean()  # left edge of the box, drawn red (JPEG blurs 1 px lines)
    assert frame()[60, 40, 2] == 60 and edge_red > 130
    assert np.abs(snapshot[60, 80].astype(int) - frame()[60, 80].astype(int)).max() < 12  # inside: untouched


def test_clear_is_logged_after_quiet_time(tmp_path, clock):
    observer = AlarmObserver(alarms_section(tmp_path, snapshots=False), NAMES, clock=clock)
    feed(observer, clock, [FIRE_HIT, FIRE_HIT] + [NOTHING] * 12)
    observer.close()
    assert [(e["event"], e["frame"]) for e in read_events(tmp_path)] == [("raise", 1), ("clear", 9)]
    assert observer.status() == {"active": [], "events": 1, "pending_events": 0}


def test_clip_holds_the_seconds_before_and_after_the_raise(tmp_path, clock):
    section = alarms_section(tmp_path, snapshots=False,
                             clip={"enabled": True, "before_s": 1.0, "after_s": 0.5, "fps": 10})
    observer = AlarmObserver(section, NAMES, clock=clock)
    feed(observer, clock, [NOTHING] * 20 + [FIRE_HIT] * 2 + [NOTHING] * 10)
    observer.close()
    event = read_events(tmp_path)[0]
    capture = cv2.VideoCapture(str(tmp_path / event["clip"]))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    # 11 frames of ring buffer before (1 s at 10 fps, plus the current one), 4 after (0.5 s at 8 frames/s fed)
    assert event["clip"].startswith("clips/") and event["clip"].endswith(".webm")  # VP8 WebM: browsers play it
    assert count == 15


def write_hook(tmp_path, body):
    script = tmp_path / "hook_{}.py".format(uuid.uuid4().hex[:6])
    script.write_text(body)
    return "{} {}".format(shlex.quote(sys.executable), shlex.quote(str(script)))


def test_hook_gets_the_event_json_on_stdin(tmp_path, clock):
    received = tmp_path / "received.json"
    command = write_hook(tmp_path, "import sys\nopen({!r}, 'w').write(sys.stdin.read())\n".format(str(received)))
    observer = AlarmObserver(alarms_section(tmp_path, hook={"command": command, "timeout_s": 10}), NAMES,
                             clock=clock)
    feed(observer, clock, [FIRE_HIT, FIRE_HIT])
    observer.flush()
    observer.hooks.join(10.0)
    observer.close()
    assert json.loads(received.read_text()) == read_events(tmp_path)[0]
    assert observer.hooks.finished == [(0, "exit")]


def test_hanging_hook_is_killed_after_its_timeout_without_blocking_the_loop(tmp_path, clock):
    pids = tmp_path / "pids.txt"
    command = write_hook(tmp_path, (
        "import os, subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "open({!r}, 'w').write('%d %d' % (os.getpid(), child.pid))\n"
        "time.sleep(60)\n").format(str(pids)))
    observer = AlarmObserver(alarms_section(tmp_path, hook={"command": command, "timeout_s": 1.0}), NAMES,
                             clock=clock)
    started = time.monotonic()
    feed(observer, clock, [FIRE_HIT, FIRE_HIT, FIRE_HIT])
    assert time.monotonic() - started < 0.5  # observer calls return at once
    deadline = time.monotonic() + 10
    while not observer.hooks.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    observer.close()
    assert observer.hooks.finished == [(-9, "timeout")]
    assert 0.9 < elapsed < 5.0
    hook_pid, grandchild_pid = (int(v) for v in pids.read_text().split())
    for pid in (hook_pid, grandchild_pid):  # the whole process group was killed
        assert not os.path.exists("/proc/{}".format(pid)) or "Z" in open("/proc/{}/stat".format(pid)).read().split()[2]


def test_hook_that_cannot_start_is_logged_and_the_event_still_written(tmp_path, clock, caplog):
    hook = tmp_path / "gone-hook"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    observer = AlarmObserver(alarms_section(tmp_path, hook={"command": str(hook)}), NAMES, clock=clock)
    hook.unlink()  # checked at start, removed while the watch runs
    feed(observer, clock, [FIRE_HIT, FIRE_HIT])
    observer.close()
    assert len(read_events(tmp_path)) == 1
    assert "gone-hook cannot start" in caplog.text


@pytest.mark.parametrize("command, words", [
    ("notify 'unterminated", "config: alarms.hook.command: cannot parse"),
    ("   ", "config: alarms.hook.command: the command is empty"),
    ("no-such-program-jd --flag", "config: alarms.hook.command: program no-such-program-jd not found"),
    ("/nonexistent/hook.sh", "config: alarms.hook.command: program /nonexistent/hook.sh not found"),
])
def test_a_broken_hook_command_is_refused_at_start_naming_the_key(tmp_path, command, words):
    with pytest.raises(JetsonDetectError) as caught:
        HookRunner(command, timeout_s=1.0, max_running=1)
    assert str(caught.value).startswith(words) and "\n" not in str(caught.value)


def wait_finished(runner, count, limit_s=15.0):
    deadline = time.monotonic() + limit_s
    while len(runner.finished) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(runner.finished)


def gone(pid):
    return not os.path.exists("/proc/{}".format(pid)) or "Z" in open("/proc/{}/stat".format(pid)).read().split()[2]


def test_a_hook_whose_background_child_holds_its_pipes_times_out_and_later_hooks_still_run(tmp_path):
    pid_file = tmp_path / "child.pid"
    runner = HookRunner("sh -c 'sleep 100 & echo $! > {}'".format(shlex.quote(str(pid_file))), timeout_s=1.0,
                        max_running=1)
    assert runner.run({"id": "a"})
    assert wait_finished(runner, 1) == [(0, "timeout")]  # sh exited at once; its child held stdout for the timeout
    assert gone(int(pid_file.read_text()))  # the whole process group was killed
    runner.argv = ["sh", "-c", "echo second"]
    assert runner.run({"id": "b"})  # max_running 1: the slot was freed
    assert wait_finished(runner, 2)[1] == (0, "exit")
    assert runner.last_output == b"second\n"


def test_a_hook_child_that_escapes_the_process_group_does_not_block_the_runner(tmp_path):
    pid_file = tmp_path / "child.pid"
    runner = HookRunner("sh -c 'setsid sleep 100 & echo $! > {}'".format(shlex.quote(str(pid_file))),
                        timeout_s=1.0, max_running=1)
    try:
        assert runner.run({"id": "a"})
        assert wait_finished(runner, 1) == [(0, "timeout")]  # no wait on the pipe its escaped child still holds
        runner.argv = ["sh", "-c", "exit 3"]
        assert runner.run({"id": "b"})
        assert wait_finished(runner, 2)[1] == (3, "exit")
    finally:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), 9)
            except OSError:
                pass


def test_hook_output_is_read_but_only_its_last_64_kib_are_kept(tmp_path):
    runner = HookRunner("sh -c 'head -c 5000000 /dev/zero; echo tail-of-output; exit 1'", timeout_s=10.0,
                        max_running=1)
    assert runner.run({"id": "a"})
    assert wait_finished(runner, 1) == [(1, "exit")]  # 5 MB of output did not block it on a full pipe
    assert len(runner.last_output) == MAX_HOOK_OUTPUT_BYTES
    assert runner.last_output.endswith(b"\0tail-of-output\n")


def test_rotation_deletes_files_past_the_age_then_oldest_past_the_size_limit(tmp_path):
    now = 1_000_000.0
    store = MediaStore(str(tmp_path), max_total_mb=3.0 / 1024, max_age_days=1.0, min_free_mb=0, clock=lambda: now)
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    ages_h = {"a.jpg": 30, "b.jpg": 5, "c.jpg": 4, "d.jpg": 3}
    for name, age in ages_h.items():
        path = snapshots / name
        path.write_bytes(b"x" * 1024)
        os.utime(path, (now - age * 3600, now - age * 3600))
    assert store.save("snapshots", "e.jpg", b"y" * 1024) is not None
    # a.jpg is older than a day; then 3 KB total allows b/c/d + e only after dropping b
    assert sorted(os.listdir(snapshots)) == ["c.jpg", "d.jpg", "e.jpg"]


def test_write_failure_midway_leaves_only_whole_lines_and_events_wait_in_memory(tmp_path):
    state = {"fail": True}

    def flaky_write(fd, data):
        if state["fail"]:
            os.write(fd, bytes(data[:7]))  # half a line reaches the disk, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    log = EventLog(str(tmp_path / EVENTS_FILE), write=flaky_write)
    log.submit({"event": "raise", "n": 1})
    assert log.flush() == 1
    assert (tmp_path / EVENTS_FILE).read_bytes() == b""
    log.submit({"event": "raise", "n": 2})
    assert log.flush() == 2
    state["fail"] = False
    assert log.flush() == 0
    assert read_events(tmp_path) == [{"event": "raise", "n": 1}, {"event": "raise", "n": 2}]


def test_injected_full_disk_keeps_the_loop_running_and_the_jsonl_intact(tmp_path, clock):
    state = {"full": False}

    def disk(fd, data):
        if state["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    observer = AlarmObserver(alarms_section(tmp_path, clip={"enabled": True, "before_s": 0.2, "after_s": 0.2}),
                             NAMES, clock=clock, write=disk)
    feed(observer, clock, [FIRE_HIT] * 2 + [NOTHING] * 12)  # raise, clear
    observer.flush()
    state["full"] = True
    feed(observer, clock, [FIRE_HIT] * 2 + [NOTHING] * 12 + [FIRE_HIT] * 2, start_index=100)
    observer.flush()
    assert observer.status()["pending_events"] == 3
    assert len(read_events(tmp_path)) == 2
    state["full"] = False
    feed(observer, clock, [NOTHING] * 30, start_index=200)  # retries while the loop goes on
    observer.close()
    events = read_events(tmp_path)
    assert [(e["event"], e["frame"]) for e in events] == [
        ("raise", 1), ("clear", 9), ("raise", 101), ("clear", 109), ("raise", 115), ("clear", 207)]
    assert len(os.listdir(tmp_path / "snapshots")) == 1  # the full-disk snapshots were skipped, not retried






def test_real_full_tmpfs_keeps_the_loop_running_and_the_jsonl_intact(tiny_tmpfs, clock):
    events_dir = tiny_tmpfs / "events"
    big = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)  # JPEG ≈ 300 KB: never fits
    observer = AlarmObserver(alarms_section(events_dir), NAMES, clock=clock)
    cycle = [FIRE_HIT] * 2 + [NOTHING] * 12  # raise at +1, clear at +9 (1 s later at 8 frames/s)
    expected = []
    index = 0
    for _ in range(2):
        for detections in cycle:
            observer(big, detections, index, {})
            clock.t += 0.125
            index += 1
        expected += [("raise", index - 13), ("clear", index - 5)]
    observer.flush()
    filler = str(fill_disk(tiny_tmpfs))  # what is left: the rest of the events file's last 4 KiB page
    for _ in range(20):
        for detections in cycle:
            observer(big, detections, index, {})
            clock.t += 0.125
            index += 1
        expected += [("raise", index - 13), ("clear", index - 5)]
    observer.flush()
    on_disk = read_events(events_dir)  # every line whole, even after a write that did not fit
    assert 4 < len(on_disk) < len(expected)
    assert len(on_disk) + observer.status()["pending_events"] == len(expected)
    os.remove(filler)
    observer(big, NOTHING, index, {})  # the loop goes on and retries
    observer.close()
    assert [(e["event"], e["frame"]) for e in read_events(events_dir)] == expected
    assert os.listdir(events_dir / "snapshots") == []


def test_a_torn_last_event_line_from_a_crash_stays_separate_from_the_next_event(tmp_path):
    path = tmp_path / EVENTS_FILE
    path.write_bytes(b'{"event":"raise","n":1}\n{"event":"ra')  # the previous run died mid-line
    log = EventLog(str(path))
    log.submit({"event": "raise", "n": 2})
    assert log.flush() == 0
    log.close()
    assert path.read_bytes() == b'{"event":"raise","n":1}\n{"event":"ra\n{"event":"raise","n":2}\n'


def test_a_second_watch_on_the_same_events_folder_is_refused_at_start(tmp_path, clock):
    first = AlarmObserver(alarms_section(tmp_path), NAMES, clock=clock)
    with pytest.raises(JetsonDetectError, match=r"config: alarms.events_dir: .*events\.jsonl is written by another "
                                                r"running watch"):
        EventLog(str(tmp_path / EVENTS_FILE))
    first.close()
    EventLog(str(tmp_path / EVENTS_FILE)).close()  # the lock goes with the first watch
