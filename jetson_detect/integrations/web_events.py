"""The alarm events the web app lists, read from the events folder, and the only media files it will serve.

Events come from ``events.jsonl`` (``app.alarms``): one entry per alarm, from its ``new`` (``raise``) record,
updated by the ``update`` and ``end`` (``clear``) records that name it in ``alarm_id``; older lines without
``alarm_id``, ``camera`` or times are understood too (a clear ends the newest open alarm of its camera and class).
Media paths in events are relative to the events folder. A path from a request is served only when it names
``snapshots/<name>`` or ``clips/<name>`` with a plain file name, and its real path lies inside the events folder,
so no request can reach any other file.
"""

import json
import os
import re
from typing import Any, Dict, List, Optional

from ..app.alarms import CLIP_DIR, EVENTS_FILE, SNAPSHOT_DIR

DEFAULT_CAMERA = "cam0"  # what a single-camera run (no ``camera`` field) is called, as in the pipeline
TAIL_BYTES = 8 * 1024 * 1024  # the events page reads at most this much of the file's end: thousands of events
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webm": "video/webm",
               ".mp4": "video/mp4", ".avi": "video/x-msvideo"}
MEDIA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}$")
START_KINDS = ("raise", "new")  # ``event`` (today) or ``type`` (MQTT events) of the record that opens an alarm


def media_file(events_dir: str, relative: str) -> Optional[str]:
    """The real path of ``snapshots/NAME`` or ``clips/NAME`` under the events folder, or None when the path is
    anything else (other folders, ``..``, separators or odd characters in the name, links leading out, no file)."""
    parts = relative.split("/")
    if len(parts) != 2 or parts[0] not in (SNAPSHOT_DIR, CLIP_DIR):
        return None
    name = parts[1]
    if not MEDIA_NAME.match(name) or ".." in name or os.path.splitext(name)[1].lower() not in MEDIA_TYPES:
        return None
    root = os.path.realpath(events_dir)
    path = os.path.realpath(os.path.join(root, parts[0], name))
    if os.path.dirname(path) != os.path.join(root, parts[0]) or not os.path.isfile(path):
        return None
    return path


def media_type(path: str) -> str:
    return MEDIA_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")


def _media_url(value: Any) -> Optional[str]:
    """``/media/<relative>`` for an event's snapshot or clip path when it has the shape ``media_file`` accepts."""
    if not isinstance(value, str):
        return None
    parts = value.replace(os.sep, "/").split("/")
    if len(parts) != 2 or parts[0] not in (SNAPSHOT_DIR, CLIP_DIR) or not MEDIA_NAME.match(parts[1]):
        return None
    return "/media/" + "/".join(parts)


def _tail_lines(path: str, max_bytes: int) -> List[str]:
    """The file's complete lines within its last ``max_bytes`` (a torn first or last line is dropped)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            start = max(0, size - max_bytes)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]
    lines = lines[:-1]  # after the last newline: empty, or a line still being written
    return [line.decode("utf-8", "replace") for line in lines]


def load_events(events_dir: Optional[str], camera: Optional[str] = None, class_name: Optional[str] = None,
                limit: int = 100) -> List[Dict[str, Any]]:
    """Alarms, newest first: one entry per raise (``new``), updated by the later records with its id."""
    if not events_dir:
        return []
    alarms: Dict[str, Dict[str, Any]] = {}
    order: List[str] = []
    for line in _tail_lines(os.path.join(events_dir, EVENTS_FILE), TAIL_BYTES):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            continue
        kind = record.get("type", record.get("event"))
        # update/end records have ids of their own and name the alarm they belong to in alarm_id
        event_id = record["alarm_id"] if isinstance(record.get("alarm_id"), str) else record["id"]
        if kind in START_KINDS and event_id not in alarms:
            alarms[event_id] = {"id": event_id}
            order.append(event_id)
        if event_id not in alarms and kind in ("clear", "end"):
            # an older clear has no alarm_id: it ends the newest active alarm of its camera and class
            event_id = _open_alarm(alarms, order, record) or event_id
            record = {"end_time": record.get("end_time") or record.get("time")}
        if event_id in alarms:
            alarms[event_id].update((k, v) for k, v in record.items() if v is not None and k != "id")
            alarms[event_id]["state"] = "ended" if kind in ("end", "clear") else "active"
    found = []
    for event_id in reversed(order):
        entry = _public(alarms[event_id])
        if camera and entry["camera"] != camera:
            continue
        if class_name and entry["class"] != class_name:
            continue
        found.append(entry)
        if len(found) >= limit:
            break
    return found


def _open_alarm(alarms: Dict[str, Dict[str, Any]], order: List[str], record: Dict[str, Any]) -> Optional[str]:
    """The id of the newest still-active alarm with the record's camera and class."""
    for event_id in reversed(order):
        alarm = alarms[event_id]
        if (alarm.get("state") == "active" and alarm.get("class") == record.get("class")
                and alarm.get("camera") == record.get("camera")):
            return event_id
    return None


def _public(record: Dict[str, Any]) -> Dict[str, Any]:
    """The fields the page and the API show, with media URLs in place of file paths."""
    confidence = record.get("max_confidence", record.get("confidence"))
    return {
        "id": record["id"],
        "camera": str(record.get("camera") or DEFAULT_CAMERA),
        "class": str(record.get("class", "")),
        "time": record.get("start_time", record.get("time")),
        "end_time": record.get("end_time"),
        "confidence": confidence if isinstance(confidence, (int, float)) else None,
        "track_id": record.get("track_id"),
        "frame": record.get("frame"),
        "state": record.get("state"),
        "snapshot_url": _media_url(record.get("snapshot")),
        "clip_url": _media_url(record.get("clip")),
    }
