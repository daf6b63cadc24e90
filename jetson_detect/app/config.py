"""YAML configuration: load, validate against one schema, fill defaults, let CLI flags override.

A config is a plain nested dict after ``load_config``. Every error names the file, the dotted key and the allowed
values, on one line; every number must be finite (a NaN threshold compares false with everything, so it would
silently switch a rule off). The model and detection ranges are ``option_ranges``', shared with the command line.
``apply_overrides`` maps run-command flags onto keys (table ``CLI_OVERRIDES``) and validates again, so a bad flag
value is reported like a bad file value.
"""

import argparse
import copy
import math
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import option_ranges
from ..errors import JetsonDetectError
from ..yaml_files import load_yaml_file

Config = Dict[str, Any]

_MISSING = object()


class Field(object):
    """One leaf of the schema: accepted types, default, and optional choices or numeric bounds."""

    def __init__(self, kinds: Tuple[type, ...], default: Any, choices: Optional[Sequence[Any]] = None,
                 minimum: Optional[float] = None, maximum: Optional[float] = None, nullable: bool = False,
                 describe: str = "", limits: Optional[option_ranges.Range] = None,
                 check: Optional[Callable[[Any], Optional[str]]] = None) -> None:
        self.kinds = kinds
        self.default = default
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        self.nullable = nullable
        self.describe = describe
        self.limits = limits  # a shared option range instead of minimum/maximum
        self.check = check  # returns what is wrong with a value, or None
        if limits is not None:
            self.minimum, self.maximum, self.describe = limits.low, limits.high, limits.describe()


class ListOf(object):
    """A list whose items are checked by ``item`` (a Field); ``nullable`` admits null for the whole list."""

    def __init__(self, item: Field, default: Any, nullable: bool = False, describe: str = "") -> None:
        self.item = item
        self.default = default
        self.nullable = nullable
        self.describe = describe


class Roi(object):
    """A polygon of at least three [x, y] points, as fractions (0..1) of the frame width and height."""

    def __init__(self) -> None:
        self.default = None


NUMBER = (int, float)


def _sink_problem(uri: str) -> Optional[str]:
    """What is wrong with an http://HOST:PORT sink's port (other sinks are checked when they open)."""
    if not uri.startswith("http://"):
        return None
    port_text = uri[len("http://"):].rstrip("/").rpartition(":")[2]
    port = int(port_text) if port_text.isdigit() else None
    if port is None or option_ranges.PORT.problem(port) is not None:
        return "the port must be {}, e.g. http://0.0.0.0:8080".format(option_ranges.PORT.describe())
    return None


RULE_SCHEMA = {
    "min_confidence": Field(NUMBER, 0.4, minimum=0.0, maximum=1.0, describe="a number from 0 to 1"),
    "min_area_px": Field(NUMBER, 0, minimum=0, describe="a box area in original-image pixels, >= 0"),
    "roi": Roi(),
    "raise_after": Field((int,), 3, minimum=1, describe="an integer N >= 1 (frames of the last `window`)"),
    "window": Field((int,), 5, minimum=1, maximum=1000, describe="an integer M from 1 to 1000"),
    "clear_after_s": Field(NUMBER, 10.0, minimum=0, describe="seconds >= 0"),
    "cooldown_s": Field(NUMBER, 60.0, minimum=0, describe="seconds >= 0"),
}

SCHEMA = {
    "source": Field((str,), None, nullable=True, describe="a source URI (csi://0, /dev/video0, rtsp://..., a file)"),
    "camera": Field((int,), None, minimum=0, nullable=True, describe="a camera index >= 0 or null"),
    "outputs": ListOf(Field((str,), None, describe="a sink URI", check=_sink_problem), [],
                      describe="a list of sink URIs"),
    "http_token": Field((str,), None, nullable=True, describe="a string or null"),
    "save_json": Field((str,), None, nullable=True, describe="a JSON-lines file path or null"),
    "model": {
        "weights": Field((str,), None, nullable=True, describe="a .wts, .pt or .engine path"),
        "cfg": Field((str,), None, nullable=True, describe="a model yaml path or null"),
        "backend": Field((str,), "auto", choices=("auto", "tensorrt", "onnxruntime")),
        "precision": Field((str,), "fp16", choices=("fp32", "fp16", "int8")),
        "img_size": Field((int,), 640, limits=option_ranges.IMG_SIZE),
        "engine_cache": Field((str,), None, nullable=True, describe="a writable folder or null"),
    },
    "detection": {
        "conf_thres": Field(NUMBER, 0.25, limits=option_ranges.CONF_THRES),
        "iou_thres": Field(NUMBER, 0.45, limits=option_ranges.IOU_THRES),
        "max_det": Field((int,), 300, limits=option_ranges.MAX_DET),
        "classes": ListOf(Field((str,), None, describe="a class name"), None, nullable=True,
                          describe="a list of class names or null for all"),
    },
    "alarms": {
        "enabled": Field((bool,), False),
        "events_dir": Field((str,), "events", describe="a folder for events.jsonl, snapshots and clips"),
        "snapshots": Field((bool,), True),
        "rule_defaults": RULE_SCHEMA,
        "rules": "rules",
        "clip": {
            "enabled": Field((bool,), False),
            "before_s": Field(NUMBER, 3.0, minimum=0, maximum=60, describe="seconds from 0 to 60"),
            "after_s": Field(NUMBER, 3.0, minimum=0, maximum=60, describe="seconds from 0 to 60"),
            "fps": Field(NUMBER, 10.0, minimum=1, maximum=60, describe="frames per second from 1 to 60"),
            "max_width": Field((int,), 640, minimum=64, maximum=4096, describe="pixels from 64 to 4096"),
        },
        "hook": {
            "command": Field((str,), None, nullable=True, describe="a shell-free command line or null"),
            "timeout_s": Field(NUMBER, 10.0, minimum=0.1, maximum=3600, describe="seconds from 0.1 to 3600"),
            "max_running": Field((int,), 2, minimum=1, maximum=16, describe="an integer from 1 to 16"),
        },
        "confirm": Field((str,), "class", choices=("class", "track")),
        "update_every_s": Field(NUMBER, 30.0, minimum=0, describe="seconds >= 0 between update events (0 = never)"),
        "update_min_rise": Field(NUMBER, 0.1, minimum=0, maximum=1,
                                 describe="a confidence rise from 0 to 1 that sends an update event at once"),
        "stationary": {
            "max_move_px": Field(NUMBER, None, minimum=0, nullable=True, describe="pixels >= 0 or null"),
            "max_move_fraction": Field(NUMBER, 0.02, minimum=0, maximum=1,
                                       describe="a fraction of the frame diagonal from 0 to 1"),
            "after_s": Field(NUMBER, 300.0, minimum=0, describe="seconds >= 0"),
            "suppress": Field((bool,), False),
        },
        "storage": {
            "max_total_mb": Field(NUMBER, 500.0, minimum=1, describe="megabytes >= 1"),
            "max_age_days": Field(NUMBER, 14.0, minimum=0, describe="days >= 0 (0 keeps files forever)"),
            "min_free_mb": Field(NUMBER, 100.0, minimum=0, describe="megabytes >= 0"),
        },
    },
    "telemetry": {
        "enabled": Field((bool,), True),
        "interval_s": Field(NUMBER, 1.0, minimum=0.1, maximum=60, describe="seconds from 0.1 to 60"),
        "log_every_s": Field(NUMBER, 60.0, minimum=0, describe="seconds >= 0 (0 = never)"),
        "throttle_temp_c": Field(NUMBER, 85.0, minimum=30, maximum=120, describe="degrees C from 30 to 120"),
    },
    "logging": {
        "level": Field((str,), "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    },
    "tracker": {
        "enabled": Field((bool,), True),
        "iou_threshold": Field(NUMBER, 0.3, minimum=0.01, maximum=1.0, describe="a number from 0.01 to 1"),
        "max_age_frames": Field((int,), 15, minimum=0, maximum=10000, describe="frames from 0 to 10000"),
    },
    "mqtt": "mqtt",
    "detect_fps": Field(NUMBER, 5.0, minimum=0.1, maximum=120, describe="detections per second per live camera, "
                                                                       "from 0.1 to 120"),
    "cameras": "cameras",
}

# (argparse dest, dotted config key, flag), as the run command names them (commands/options.py, app/pipeline.py).
# A flag counts as given when the parser recorded it (``RecordGiven``: every one of these flags with a default other
# than None uses it), or, for a flag without it, when its value is neither None nor empty, nor the parser's default
# (pass ``defaults``). So an absent flag keeps the file's value and a typed one wins even when it equals the default.
CLI_OVERRIDES = (
    ("source", "source", "--source"),
    ("camera", "camera", "--camera"),
    ("outputs", "outputs", "--output"),
    ("http_token", "http_token", "--http-token"),
    ("save_json", "save_json", "--save-json"),
    ("weights", "model.weights", "--weights"),
    ("cfg", "model.cfg", "--cfg"),
    ("backend", "model.backend", "--backend"),
    ("precision", "model.precision", "--precision"),
    ("img_size", "model.img_size", "--img-size"),
    ("engine_cache", "model.engine_cache", "--engine-cache"),
    ("conf", "detection.conf_thres", "--conf"),
    ("iou", "detection.iou_thres", "--iou"),
    ("max_det", "detection.max_det", "--max-det"),
    ("classes", "detection.classes", "--classes"),
    ("events_dir", "alarms.events_dir", "--events-dir"),
    ("log_level", "logging.level", "--log-level"),
)


def _fail(origin: str, key: str, problem: str) -> JetsonDetectError:
    return JetsonDetectError("{}: {}: {}".format(origin, key, problem))


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _allowed(field: Field) -> str:
    if field.choices:
        return "allowed values: " + ", ".join(str(c) for c in field.choices)
    if field.describe:
        return "expected " + field.describe
    return "expected " + " or ".join(k.__name__ for k in field.kinds)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _check_field(field: Field, value: Any, origin: str, key: str) -> Any:
    number: Any = value
    if value is None:
        if field.nullable:
            return None
        raise _fail(origin, key, "must not be empty; " + _allowed(field))
    # bool is an int subclass: true must not pass as a number, nor 1 as a bool
    is_bool = isinstance(value, bool)
    if is_bool != (bool in field.kinds) or not isinstance(value, field.kinds):
        raise _fail(origin, key, "{} ({}) is not allowed; {}".format(_shown(value), _type_name(value),
                                                                     _allowed(field)))
    if field.choices is not None and value not in field.choices:
        raise _fail(origin, key, "{} is not allowed; {}".format(_shown(value), _allowed(field)))
    problem = field.check(value) if field.check is not None else None
    if problem is not None:
        raise _fail(origin, key, "{}: {}".format(_shown(value), problem))
    if not isinstance(value, (int, float)):
        return value
    if not _finite(number):
        raise _fail(origin, key, "{} is not a finite number; {}".format(_shown(value), _allowed(field)))
    limits = field.limits
    too_high = field.maximum is not None and (number > field.maximum or (
        limits is not None and limits.high_open and number == field.maximum))
    if (field.minimum is not None and number < field.minimum) or too_high:
        raise _fail(origin, key, "{} is out of range; {}".format(_shown(value), _allowed(field)))
    if limits is not None and limits.multiple_of > 1 and number % limits.multiple_of:
        raise _fail(origin, key, "{} is not a multiple of {}; {}".format(_shown(value), limits.multiple_of,
                                                                         _allowed(field)))
    return value


def _shown(value: Any) -> str:
    """A value for an error message, kept short (a hostile file's value may be huge)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_roi(value: Any, origin: str, key: str) -> Any:
    if value is None:
        return None
    allowed = "expected null or a list of at least 3 [x, y] points, x and y fractions from 0 to 1"
    if not isinstance(value, list) or len(value) < 3:
        raise _fail(origin, key, "{} is not a polygon; {}".format(_shown(value), allowed))
    points = []
    for point in value:
        ok = (isinstance(point, list) and len(point) == 2
              and all(isinstance(v, NUMBER) and not isinstance(v, bool) and 0 <= v <= 1 for v in point))
        if not ok:
            raise _fail(origin, key, "point {} is not allowed; {}".format(_shown(point), allowed))
        points.append([float(point[0]), float(point[1])])
    return points


def _check_node(schema: Any, value: Any, origin: str, key: str) -> Any:
    if isinstance(schema, Field):
        return _check_field(schema, value, origin, key)
    if isinstance(schema, Roi):
        return _check_roi(value, origin, key)
    if isinstance(schema, ListOf):
        if value is None and schema.nullable:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise _fail(origin, key, "{} ({}) is not allowed; expected {}".format(
                _shown(value), _type_name(value), schema.describe))
        return [_check_field(schema.item, v, origin, "{}[{}]".format(key, i)) for i, v in enumerate(value)]
    return _check_section(schema, value, origin, key)


def _check_section(schema: Dict[str, Any], value: Any, origin: str, prefix: str) -> Dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _fail(origin, prefix or "(top level)", "{} is not a mapping; allowed keys: {}".format(
            _shown(value), ", ".join(schema)))
    for name in value:
        if name not in schema:
            raise _fail(origin, _join(prefix, str(name)[:80]), "unknown key; allowed keys: " + ", ".join(schema))
    out = {}
    for name, sub in schema.items():
        key = _join(prefix, name)
        if sub in ("rules", "cameras"):
            continue
        if sub == "mqtt":
            out[name] = check_mqtt_section(value.get(name), origin, key)
            continue
        out[name] = _check_node(sub, value.get(name, _default(sub)), origin, key)
    if "rules" in schema:
        out["rules"] = _check_rules(value.get("rules"), out["rule_defaults"], origin, _join(prefix, "rules"))
        if out["enabled"] and not out["rules"]:
            raise _fail(origin, _join(prefix, "rules"),
                        "empty while alarms are enabled; name at least one class, e.g. rules: {fire: {}}")
    return out


MQTT_TLS_SCHEMA = {
    "enabled": Field((bool,), False),
    "ca_file": Field((str,), None, nullable=True, describe="a CA certificate file (PEM) or null for the system's"),
    "cert_file": Field((str,), None, nullable=True, describe="a client certificate file (PEM) or null"),
    "key_file": Field((str,), None, nullable=True, describe="the client certificate's key file or null"),
    "insecure": Field((bool,), False),
}

MQTT_SCHEMA = {
    "enabled": Field((bool,), False),
    "host": Field((str,), "127.0.0.1", describe="the broker's host name or address"),
    "port": Field((int,), 1883, minimum=1, maximum=65535, describe="a TCP port from 1 to 65535"),
    "username": Field((str,), None, nullable=True, describe="a user name or null"),
    "password_file": Field((str,), None, nullable=True, describe="a file holding the password (one line) or null"),
    "tls": MQTT_TLS_SCHEMA,
    "client_id": Field((str,), None, nullable=True, describe="an MQTT client id or null (jetson_detect-<node>)"),
    "topic_prefix": Field((str,), "jetson_detect", describe="a topic prefix without + or #"),
    "discovery_prefix": Field((str,), "homeassistant", nullable=True,
                              describe="Home Assistant's discovery prefix, or null for no discovery"),
    "qos": Field((int,), 1, choices=(0, 1, 2)),
    "retain": Field((bool,), True),
    "node": Field((str,), None, nullable=True, describe="this device's name (letters, digits, _ and -), or null "
                                                      "for the host name"),
    "stats_interval_s": Field(NUMBER, 30.0, minimum=1, maximum=86400, describe="seconds from 1 to 86400"),
    "spool_dir": Field((str,), None, nullable=True, describe="a folder for unsent events, or null for "
                                                            "<alarms.events_dir>/mqtt-spool"),
    "spool_max_mb": Field(NUMBER, 50.0, minimum=0.01, describe="megabytes >= 0.01"),
    "web_base_url": Field((str,), None, nullable=True, describe="the web app's URL that serves events_dir, or null"),
    "keepalive_s": Field((int,), 30, minimum=5, maximum=3600, describe="seconds from 5 to 3600"),
}


def check_mqtt_section(value: Any, origin: str, key: str) -> Dict[str, Any]:
    """The ``mqtt`` section: the schema's checks, then topic names that MQTT allows and a readable password file."""
    import re
    import socket

    section = _check_section(MQTT_SCHEMA, value, origin, key)
    for name in ("topic_prefix", "discovery_prefix"):
        topic = section[name]
        if topic is not None and (not topic or any(c in topic for c in "+#\0") or topic.startswith("/")
                                  or topic.endswith("/")):
            raise _fail(origin, "{}.{}".format(key, name), "{!r} is not a topic prefix; expected a non-empty topic "
                        "without + or #, not starting or ending with /".format(topic))
    if section["node"] is None:
        section["node"] = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "jetson"
    if not re.match(r"^[A-Za-z0-9_-]+$", section["node"]):
        raise _fail(origin, key + ".node", "{!r} is not allowed; expected letters, digits, _ and - only (it names "
                    "topics and Home Assistant ids)".format(section["node"]))
    if section["password_file"] is not None and section["username"] is None:
        raise _fail(origin, key + ".password_file", "set without mqtt.username; give the user name too")
    return section


def _check_rules(value: Any, defaults: Dict[str, Any], origin: str, key: str) -> Dict[str, Dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(origin, key, "{} is not a mapping of class name to rule; allowed rule keys: {}".format(
            _shown(value), ", ".join(RULE_SCHEMA)))
    rules = {}
    for class_name, rule in value.items():
        if rule is not None and not isinstance(rule, dict):
            raise _fail(origin, "{}.{}".format(key, class_name), "{} is not a mapping; allowed rule keys: {}".format(
                _shown(rule), ", ".join(RULE_SCHEMA)))
        merged = dict(defaults)
        merged.update(rule or {})
        checked = _check_section(RULE_SCHEMA, merged, origin, "{}.{}".format(key, class_name))
        if checked["raise_after"] > checked["window"]:
            raise _fail(origin, "{}.{}.raise_after".format(key, class_name),
                        "{} is larger than window {}; allowed values: 1 to {}".format(
                            checked["raise_after"], checked["window"], checked["window"]))
        rules[str(class_name)] = checked
    return rules


def _default(schema: Any) -> Any:
    if isinstance(schema, (Field, ListOf, Roi)):
        return copy.deepcopy(schema.default)
    return {}


def _join(prefix: str, name: str) -> str:
    return "{}.{}".format(prefix, name) if prefix else name


def validate_config(raw: Any, origin: str = "config") -> Config:
    """Check a raw mapping against the schema and return a complete config with defaults filled in."""
    config = _check_section(SCHEMA, raw, origin, "")
    config["cameras"] = check_cameras(raw.get("cameras") if isinstance(raw, dict) else None, config, origin)
    return config


def default_config() -> Config:
    """The config that an empty file gives."""
    return validate_config({}, "defaults")


def load_config(path: Optional[str]) -> Config:
    """Read and validate a YAML config file; None gives the defaults. Oversized, non-UTF-8 and hostile (alias
    bomb, deep nesting) files are refused by ``load_yaml_file`` before any object is built."""
    if path is None:
        return default_config()
    return validate_config(load_yaml_file(path, "config file", "--config"), path)


def get_key(config: Config, dotted: str) -> Any:
    """Value at a dotted key, e.g. ``get_key(config, "model.weights")``."""
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def set_key(config: Config, dotted: str, value: Any) -> None:
    """Set the value at a dotted key (no validation; ``apply_overrides`` validates)."""
    parts = dotted.split(".")
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


GIVEN_DESTS = "given_dests"  # the namespace attribute where RecordGiven notes the flags typed on the command line


class RecordGiven(argparse.Action):
    """argparse's "store" that also notes the flag was given, so a typed value equal to the default still beats
    the config file (comparing with the default cannot tell ``--conf 0.25`` from no ``--conf``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, GIVEN_DESTS, set(getattr(namespace, GIVEN_DESTS, ())) | {self.dest})


def parser_defaults(parser: Any) -> Dict[str, Any]:
    """The parser's default for every overridable flag, for ``apply_overrides(..., defaults=...)``."""
    return {dest: parser.get_default(dest) for dest, _, _ in CLI_OVERRIDES}


def _given(args: Any, dest: str, defaults: Optional[Dict[str, Any]]) -> bool:
    if dest in getattr(args, GIVEN_DESTS, ()):
        return True
    value = getattr(args, dest, None)
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return False
    return defaults is None or dest not in defaults or value != defaults[dest]


def apply_overrides(config: Config, args: Any, defaults: Optional[Dict[str, Any]] = None) -> Config:
    """Return a copy of ``config`` where every run-command flag that was given replaces its key (see
    ``CLI_OVERRIDES`` for what counts as given; ``defaults`` is ``parser_defaults`` of the parser)."""
    merged = copy.deepcopy(config)
    changed = []
    given: Dict[str, Any] = {}
    for dest, _, _ in CLI_OVERRIDES:
        if not _given(args, dest, defaults):
            continue
        value = getattr(args, dest, None)
        given[dest] = list(value) if isinstance(value, tuple) else value
    for dest, dotted, flag in CLI_OVERRIDES:
        if dest not in given:
            continue
        if dest == "camera" and "source" not in given:
            merged["source"] = None  # --camera on the command line beats a source from the file
        if dest == "source" and "camera" not in given:
            merged["camera"] = None
        set_key(merged, dotted, given[dest])
        changed.append(flag)
    return validate_config(merged, "command line ({})".format(", ".join(changed)) if changed else "config")


def check_class_names(config: Config, names: Sequence[str], origin: str = "config") -> None:
    """Fail when detection.classes or an alarm rule names a class the model does not have."""
    known = list(names)
    wanted: List[Tuple[str, str]] = []
    for name in config["detection"]["classes"] or []:
        wanted.append(("detection.classes", name))
    if config["alarms"]["enabled"]:
        for name in config["alarms"]["rules"]:
            wanted.append(("alarms.rules." + name, name))
    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    for key, name in wanted:
        if name not in known:
            raise _fail(origin, key, "class {!r} is not in the model; allowed values: {}".format(name, shown))



CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# One entry of ``cameras:``. Keys left out inherit the top-level value (detect_fps, alarms.rules, alarms.snapshots,
# alarms.clip); ``roi`` replaces the ROI of every inherited rule; ``outputs`` are this camera's own sinks.
CAMERA_SCHEMA: Dict[str, Any] = {
    "name": Field((str,), None, describe="a unique name of 1 to 64 letters, digits, '_' or '-'"),
    "source": Field((str,), None, describe="a source URI (csi://0, /dev/video0, rtsp://..., a file)"),
    "detect_fps": Field(NUMBER, None, minimum=0.1, maximum=120, nullable=True,
                        describe="detections per second from 0.1 to 120, or null for the top-level detect_fps"),
    "roi": Roi(),
    "rules": "rules",
    "outputs": ListOf(Field((str,), None, describe="a sink URI"), [], describe="a list of sink URIs"),
    "snapshots": Field((bool,), None, nullable=True, describe="true, false or null (alarms.snapshots)"),
    "clip": "clip",
}


def check_cameras(value: Any, config: Config, origin: str) -> List[Dict[str, Any]]:
    """Validate ``cameras:`` (a list of camera entries, see ``CAMERA_SCHEMA``); every error names the camera and the
    key. The entries keep their own shape (inherited keys stay null) so a validated config validates again."""
    if value is None or value == []:
        return []
    if not isinstance(value, list):
        raise _fail(origin, "cameras", "{!r} is not allowed; expected a list of cameras, each with name and "
                                       "source".format(value))
    if config["source"] is not None or config["camera"] is not None:
        raise _fail(origin, "cameras", "given together with source/camera; use either cameras or source/camera")
    cameras: List[Dict[str, Any]] = []
    for index, entry in enumerate(value):
        where = "cameras[{}]".format(index)
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and CAMERA_NAME.match(entry["name"]):
            where = "cameras.{}".format(entry["name"])
        if not isinstance(entry, dict):
            raise _fail(origin, where, "{!r} is not a mapping; allowed keys: {}".format(
                entry, ", ".join(CAMERA_SCHEMA)))
        for name in entry:
            if name not in CAMERA_SCHEMA:
                raise _fail(origin, _join(where, str(name)), "unknown key; allowed keys: " + ", ".join(CAMERA_SCHEMA))
        camera: Dict[str, Any] = {}
        for name in ("name", "source", "detect_fps", "roi", "outputs", "snapshots"):
            camera[name] = _check_node(CAMERA_SCHEMA[name], entry.get(name, _default(CAMERA_SCHEMA[name])), origin,
                                       _join(where, name))
        if not CAMERA_NAME.match(camera["name"]):
            raise _fail(origin, _join(where, "name"), "{!r} is not allowed; expected {}".format(
                camera["name"], CAMERA_SCHEMA["name"].describe))
        if any(c["name"] == camera["name"] for c in cameras):
            raise _fail(origin, _join(where, "name"), "{!r} is used by two cameras; give each its own name".format(
                camera["name"]))
        clip = entry.get("clip")
        if clip is not None and not isinstance(clip, dict):
            raise _fail(origin, _join(where, "clip"), "{!r} is not a mapping; allowed keys: {}".format(
                clip, ", ".join(SCHEMA["alarms"]["clip"])))  # type: ignore[index]
        camera["clip"] = dict(clip or {})
        camera["rules"] = entry.get("rules")
        camera_alarms(config, camera, origin)  # checks the rules and clip overrides now, not at the first frame
        cameras.append(camera)
    return cameras


def camera_alarms(config: Config, camera: Dict[str, Any], origin: str = "config") -> Dict[str, Any]:
    """The complete ``alarms`` section for one camera entry: the top-level one with the camera's overrides."""
    where = "cameras.{}".format(camera["name"])
    clip_schema: Dict[str, Any] = SCHEMA["alarms"]["clip"]  # type: ignore[index]
    alarms = copy.deepcopy(config["alarms"])
    if camera.get("snapshots") is not None:
        alarms["snapshots"] = camera["snapshots"]
    clip = dict(alarms["clip"])
    for name in camera.get("clip") or {}:
        if name not in clip_schema:
            raise _fail(origin, _join(where, "clip." + str(name)),
                        "unknown key; allowed keys: " + ", ".join(clip_schema))
    clip.update(camera.get("clip") or {})
    alarms["clip"] = _check_section(clip_schema, clip, origin, _join(where, "clip"))
    defaults = dict(alarms["rule_defaults"])
    if camera.get("roi") is not None:
        defaults["roi"] = camera["roi"]
    if camera.get("rules") is not None:
        alarms["rules"] = _check_rules(camera["rules"], defaults, origin, _join(where, "rules"))
        if alarms["enabled"] and not alarms["rules"]:
            raise _fail(origin, _join(where, "rules"), "empty while alarms are enabled; name at least one class")
    elif camera.get("roi") is not None:
        for rule in alarms["rules"].values():
            rule["roi"] = camera["roi"]
    return alarms
