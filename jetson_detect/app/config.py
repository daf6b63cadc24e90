"""YAML configuration: load, validate against one schema, fill defaults, let CLI flags override.

A config is a plain nested dict after ``load_config``. Every error names the file, the dotted key and the allowed
values, on one line. ``apply_overrides`` maps run-command flags onto keys (table ``CLI_OVERRIDES``) and validates
again, so a bad flag value is reported like a bad file value.
"""

import copy
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from ..errors import JetsonDetectError

Config = Dict[str, Any]

_MISSING = object()


class Field(object):
    """One leaf of the schema: accepted types, default, and optional choices or numeric bounds."""

    def __init__(self, kinds: Tuple[type, ...], default: Any, choices: Optional[Sequence[Any]] = None,
                 minimum: Optional[float] = None, maximum: Optional[float] = None, nullable: bool = False,
                 describe: str = "") -> None:
        self.kinds = kinds
        self.default = default
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        self.nullable = nullable
        self.describe = describe


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
    "outputs": ListOf(Field((str,), None, describe="a sink URI"), [], describe="a list of sink URIs"),
    "http_token": Field((str,), None, nullable=True, describe="a string or null"),
    "save_json": Field((str,), None, nullable=True, describe="a JSON-lines file path or null"),
    "model": {
        "weights": Field((str,), None, nullable=True, describe="a .wts, .pt or .engine path"),
        "cfg": Field((str,), None, nullable=True, describe="a model yaml path or null"),
        "backend": Field((str,), "auto", choices=("auto", "tensorrt", "onnxruntime")),
        "precision": Field((str,), "fp16", choices=("fp32", "fp16", "int8")),
        "img_size": Field((int,), 640, minimum=32, maximum=1280, describe="a multiple of 32 from 32 to 1280"),
        "engine_cache": Field((str,), None, nullable=True, describe="a writable folder or null"),
    },
    "detection": {
        "conf_thres": Field(NUMBER, 0.25, minimum=0.0, maximum=1.0, describe="a number from 0 to 1"),
        "iou_thres": Field(NUMBER, 0.45, minimum=0.0, maximum=1.0, describe="a number from 0 to 1"),
        "max_det": Field((int,), 300, minimum=1, maximum=10000, describe="an integer from 1 to 10000"),
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
    "detect_fps": Field(NUMBER, 5.0, minimum=0.1, maximum=120, describe="detections per second per live camera, "
                                                                       "from 0.1 to 120"),
    "cameras": "cameras",
}

# (argparse dest, dotted config key, flag), as the run command names them (commands/options.py, app/pipeline.py).
# A flag counts as given when its value is not None, not an empty list, and differs from the parser's default
# (pass ``defaults``), so an absent flag keeps the file's value.
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


def _check_field(field: Field, value: Any, origin: str, key: str) -> Any:
    number: Any = value
    if value is None:
        if field.nullable:
            return None
        raise _fail(origin, key, "must not be empty; " + _allowed(field))
    # bool is an int subclass: true must not pass as a number, nor 1 as a bool
    is_bool = isinstance(value, bool)
    if is_bool != (bool in field.kinds) or not isinstance(value, field.kinds):
        raise _fail(origin, key, "{!r} ({}) is not allowed; {}".format(value, _type_name(value), _allowed(field)))
    if field.choices is not None and value not in field.choices:
        raise _fail(origin, key, "{!r} is not allowed; {}".format(value, _allowed(field)))
    if (field.minimum is not None and number < field.minimum) or (field.maximum is not None and number > field.maximum):
        raise _fail(origin, key, "{!r} is out of range; {}".format(value, _allowed(field)))
    if key.endswith("img_size") and number % 32:
        raise _fail(origin, key, "{!r} is not a multiple of 32; {}".format(value, _allowed(field)))
    return value


def _check_roi(value: Any, origin: str, key: str) -> Any:
    if value is None:
        return None
    allowed = "expected null or a list of at least 3 [x, y] points, x and y fractions from 0 to 1"
    if not isinstance(value, list) or len(value) < 3:
        raise _fail(origin, key, "{!r} is not a polygon; {}".format(value, allowed))
    points = []
    for point in value:
        ok = (isinstance(point, list) and len(point) == 2
              and all(isinstance(v, NUMBER) and not isinstance(v, bool) and 0 <= v <= 1 for v in point))
        if not ok:
            raise _fail(origin, key, "point {!r} is not allowed; {}".format(point, allowed))
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
            raise _fail(origin, key, "{!r} ({}) is not allowed; expected {}".format(
                value, _type_name(value), schema.describe))
        return [_check_field(schema.item, v, origin, "{}[{}]".format(key, i)) for i, v in enumerate(value)]
    return _check_section(schema, value, origin, key)


def _check_section(schema: Dict[str, Any], value: Any, origin: str, prefix: str) -> Dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _fail(origin, prefix or "(top level)", "{!r} is not a mapping; allowed keys: {}".format(
            value, ", ".join(schema)))
    for name in value:
        if name not in schema:
            raise _fail(origin, _join(prefix, str(name)), "unknown key; allowed keys: " + ", ".join(schema))
    out = {}
    for name, sub in schema.items():
        key = _join(prefix, name)
        if sub in ("rules", "cameras"):
            continue
        out[name] = _check_node(sub, value.get(name, _default(sub)), origin, key)
    if "rules" in schema:
        out["rules"] = _check_rules(value.get("rules"), out["rule_defaults"], origin, _join(prefix, "rules"))
        if out["enabled"] and not out["rules"]:
            raise _fail(origin, _join(prefix, "rules"),
                        "empty while alarms are enabled; name at least one class, e.g. rules: {fire: {}}")
    return out


def _check_rules(value: Any, defaults: Dict[str, Any], origin: str, key: str) -> Dict[str, Dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(origin, key, "{!r} is not a mapping of class name to rule; allowed rule keys: {}".format(
            value, ", ".join(RULE_SCHEMA)))
    rules = {}
    for class_name, rule in value.items():
        if rule is not None and not isinstance(rule, dict):
            raise _fail(origin, "{}.{}".format(key, class_name), "{!r} is not a mapping; allowed rule keys: {}".format(
                rule, ", ".join(RULE_SCHEMA)))
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
    """Read and validate a YAML config file; None gives the defaults."""
    if path is None:
        return default_config()
    try:
        with open(path, "r") as handle:
            raw = yaml.safe_load(handle)
    except (IOError, OSError) as exc:
        raise JetsonDetectError("{}: cannot read the config file ({}); pass an existing YAML file to --config".format(
            path, exc.strerror or exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " at line {}".format(mark.line + 1) if mark is not None else ""
        raise JetsonDetectError("{}: not valid YAML{} ({}); fix the syntax".format(
            path, where, getattr(exc, "problem", None) or exc)) from None
    return validate_config(raw, path)


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


def parser_defaults(parser: Any) -> Dict[str, Any]:
    """The parser's default for every overridable flag, for ``apply_overrides(..., defaults=...)``."""
    return {dest: parser.get_default(dest) for dest, _, _ in CLI_OVERRIDES}


def apply_overrides(config: Config, args: Any, defaults: Optional[Dict[str, Any]] = None) -> Config:
    """Return a copy of ``config`` where every run-command flag that was given replaces its key.

    Without ``defaults`` a flag is given when it is not None (or an empty list); with ``defaults`` (see
    ``parser_defaults``) a value equal to the parser's default also counts as not given.
    """
    merged = copy.deepcopy(config)
    changed = []
    given: Dict[str, Any] = {}
    for dest, _, _ in CLI_OVERRIDES:
        value = getattr(args, dest, None)
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        if defaults is not None and dest in defaults and value == defaults[dest]:
            continue
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
