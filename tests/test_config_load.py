"""Configs: shipped files load, invalid files fail with one line naming key and allowed values, flags override."""

import argparse
from pathlib import Path

import pytest

from jetson_detect.app.config import (
    CLI_OVERRIDES,
    apply_overrides,
    check_class_names,
    default_config,
    load_config,
    parser_defaults,
)
from jetson_detect.errors import JetsonDetectError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_fire_smoke_config_loads_with_both_alarm_rules():
    config = load_config(str(REPO / "configs" / "fire_smoke.yaml"))
    assert sorted(config["alarms"]["rules"]) == ["fire", "smoke"]
    assert config["alarms"]["enabled"] is True
    assert config["alarms"]["rules"]["smoke"]["raise_after"] == 4
    assert config["alarms"]["rules"]["smoke"]["window"] == 6
    assert config["alarms"]["rules"]["fire"]["cooldown_s"] == 60


def test_default_config_file_loads_and_matches_builtin_model_defaults():
    config = load_config(str(REPO / "configs" / "default.yaml"))
    assert config["model"] == default_config()["model"]
    assert config["detection"] == default_config()["detection"]
    assert config["alarms"]["enabled"] is False


def test_rule_defaults_fill_every_rule_key(tmp_path):
    config = load_config(write(tmp_path, "alarms:\n  rule_defaults: {cooldown_s: 5}\n  rules: {fire: {window: 9}}\n"))
    assert config["alarms"]["rules"]["fire"] == {
        "min_confidence": 0.4, "min_area_px": 0, "roi": None, "raise_after": 3, "window": 9,
        "clear_after_s": 10.0, "cooldown_s": 5}


@pytest.mark.parametrize("text, message", [
    ("model: {precision: fp64}\n",
     "model.precision: 'fp64' is not allowed; allowed values: fp32, fp16, int8"),
    ("model: {backend: cuda}\n",
     "model.backend: 'cuda' is not allowed; allowed values: auto, tensorrt, onnxruntime"),
    ("model: {img_size: 500}\n",
     "model.img_size: 500 is not a multiple of 32; expected a multiple of 32 from 32 to 4096"),
    ("detection: {conf_thres: 1.5}\n",
     "detection.conf_thres: 1.5 is out of range; expected a number >= 0 and < 1"),
    ("detection: {conf_thres: 1.0}\n",  # the plugin refuses conf_thres 1: the config says so first
     "detection.conf_thres: 1.0 is out of range; expected a number >= 0 and < 1"),
    ("detection: {max_det: 20000}\n",
     "detection.max_det: 20000 is out of range; expected an integer from 1 to 16384"),
    ("detection: {conf_thres: yes}\n",
     "detection.conf_thres: True (bool) is not allowed; expected a number >= 0 and < 1"),
    ("detection: {conf: 0.3}\n",
     "detection.conf: unknown key; allowed keys: conf_thres, iou_thres, max_det, classes"),
    ("sources: [a]\n",
     "sources: unknown key; allowed keys: source, camera, outputs, http_token, save_json, model, detection, "
     "alarms, telemetry, logging, tracker, mqtt, detect_fps, cameras"),
    ("alarms: {enabled: true}\n",
     "alarms.rules: empty while alarms are enabled; name at least one class, e.g. rules: {fire: {}}"),
    ("alarms: {rules: {fire: {raise_after: 7}}}\n",
     "alarms.rules.fire.raise_after: 7 is larger than window 5; allowed values: 1 to 5"),
    ("alarms: {rules: {fire: {roi: [[0, 0], [1, 0]]}}}\n",
     "alarms.rules.fire.roi: [[0, 0], [1, 0]] is not a polygon; expected null or a list of at least 3 [x, y] "
     "points, x and y fractions from 0 to 1"),
    ("alarms: {rules: {fire: {roi: [[0, 0], [1, 0], [2, 1]]}}}\n",
     "alarms.rules.fire.roi: point [2, 1] is not allowed; expected null or a list of at least 3 [x, y] points, "
     "x and y fractions from 0 to 1"),
    ("alarms: {rules: {fire: {sensitivity: 3}}}\n",
     "alarms.rules.fire.sensitivity: unknown key; allowed keys: min_confidence, min_area_px, roi, raise_after, "
     "window, clear_after_s, cooldown_s"),
    ("logging: {level: verbose}\n",
     "logging.level: 'verbose' is not allowed; allowed values: DEBUG, INFO, WARNING, ERROR"),
    ("outputs: 8080\n",
     "outputs: 8080 (int) is not allowed; expected a list of sink URIs"),
    ("- a\n- b\n",
     "(top level): ['a', 'b'] is not a mapping; allowed keys: source, camera, outputs, http_token, save_json, "
     "model, detection, alarms, telemetry, logging, tracker, mqtt, detect_fps, cameras"),
])
def test_invalid_config_gives_one_line_error_naming_key_and_allowed_values(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(JetsonDetectError) as caught:
        load_config(path)
    assert str(caught.value) == "{}: {}".format(path, message)
    assert "\n" not in str(caught.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "model:\n  weights: [unclosed\n")
    with pytest.raises(JetsonDetectError, match=r"^{}: not valid YAML at line 3 ".format(path)):
        load_config(path)


def test_missing_config_file_says_so(tmp_path):
    path = str(tmp_path / "absent.yaml")
    with pytest.raises(JetsonDetectError, match=r"^{}: cannot read the config file \(No such file".format(path)):
        load_config(path)


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == default_config()


def run_args(**given):
    """Namespace as the run command builds it: every override flag present, None unless given."""
    values = {dest: None for dest, _, _ in CLI_OVERRIDES}
    values["outputs"] = []
    values.update(given)
    return argparse.Namespace(**values)


def test_flags_override_file_values_and_absent_flags_keep_them():
    config = load_config(str(REPO / "configs" / "fire_smoke.yaml"))
    merged = apply_overrides(config, run_args(source="clip.mp4", outputs=["http://0.0.0.0:8080"], conf=0.5,
                                              weights="other.wts"))
    assert merged["source"] == "clip.mp4"
    assert merged["outputs"] == ["http://0.0.0.0:8080"]
    assert merged["detection"]["conf_thres"] == 0.5
    assert merged["model"]["weights"] == "other.wts"
    assert merged["model"]["precision"] == config["model"]["precision"]
    assert merged["alarms"] == config["alarms"]
    assert config["source"] == "csi://0"  # the loaded config itself is not changed


def test_camera_flag_replaces_source_from_file():
    config = load_config(str(REPO / "configs" / "fire_smoke.yaml"))
    merged = apply_overrides(config, run_args(camera=1))
    assert (merged["source"], merged["camera"]) == (None, 1)


def test_invalid_flag_value_is_reported_as_command_line_error():
    with pytest.raises(JetsonDetectError) as caught:
        apply_overrides(default_config(), run_args(precision="fp8", img_size=320))
    assert str(caught.value) == ("command line (--precision, --img-size): model.precision: 'fp8' is not allowed; "
                                 "allowed values: fp32, fp16, int8")


def test_alarm_class_missing_from_model_names_the_known_classes():
    config = load_config(str(REPO / "configs" / "fire_smoke.yaml"))
    check_class_names(config, ["fire", "smoke"])
    with pytest.raises(JetsonDetectError) as caught:
        check_class_names(config, ["helmet", "vest"])
    assert str(caught.value) == ("config: alarms.rules.fire: class 'fire' is not in the model; "
                                 "allowed values: helmet, vest")


def test_flags_left_at_the_parser_default_keep_the_file_value():
    parser = argparse.ArgumentParser()
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--backend", default="auto")
    config = load_config(str(REPO / "configs" / "fire_smoke.yaml"))
    config["model"]["img_size"] = 320
    args = parser.parse_args(["--conf", "0.6"])
    merged = apply_overrides(config, args, defaults=parser_defaults(parser))
    assert (merged["model"]["img_size"], merged["detection"]["conf_thres"]) == (320, 0.6)


def test_run_command_flags_map_onto_config_keys():
    """The run parser accepts the flags this table names, under the same dests."""
    from jetson_detect import cli
    parser = cli.build_parser("run")
    dests = {action.dest for action in parser._actions}
    for dest, _, flag in CLI_OVERRIDES:
        if dest in dests:
            assert flag in [o for a in parser._actions if a.dest == dest for o in a.option_strings]
    assert {"source", "weights", "conf", "iou", "img_size", "backend"} <= dests


def _number_keys(schema, prefix=""):
    """Every numeric leaf of the schema as a dotted key (rule keys under alarms.rule_defaults)."""
    from jetson_detect.app.config import Field
    for name, sub in schema.items():
        key = prefix + name
        if isinstance(sub, Field) and float in sub.kinds or isinstance(sub, Field) and int in sub.kinds \
                and bool not in sub.kinds:
            yield key
        elif isinstance(sub, dict):
            yield from _number_keys(sub, key + ".")


def _nested_yaml(dotted, value):
    text = value
    for part in reversed(dotted.split(".")):
        text = "{%s: %s}" % (part, text)
    return text[1:-1] + "\n"


_CONFIG = __import__("jetson_detect.app.config", fromlist=["SCHEMA", "MQTT_SCHEMA"])
NUMBER_KEYS = sorted(list(_number_keys(_CONFIG.SCHEMA)) + list(_number_keys(_CONFIG.MQTT_SCHEMA, "mqtt.")))


def test_the_schema_walk_finds_every_kind_of_number():
    assert {"detection.conf_thres", "model.img_size", "camera", "alarms.rule_defaults.min_confidence",
            "alarms.rule_defaults.min_area_px", "alarms.storage.max_total_mb", "telemetry.interval_s",
            "alarms.clip.fps", "alarms.hook.timeout_s", "tracker.iou_threshold", "mqtt.port",
            "mqtt.stats_interval_s"} <= set(NUMBER_KEYS)


@pytest.mark.parametrize("key", NUMBER_KEYS)
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_infinity_are_refused_in_every_number_naming_the_key(tmp_path, key, value):
    with pytest.raises(JetsonDetectError) as caught:
        load_config(write(tmp_path, _nested_yaml(key, value)))
    message = str(caught.value)
    assert ": {}: ".format(key) in message
    assert "is not a finite number" in message or "(float) is not allowed" in message  # an int-only key


@pytest.mark.parametrize("rule", ["{min_confidence: .nan}", "{roi: [[0, 0], [1, 0], [.nan, 1]]}",
                                  "{min_area_px: .inf}", "{clear_after_s: .nan}"])
def test_nan_in_an_alarm_rule_is_refused_naming_the_rule_key(tmp_path, rule):
    with pytest.raises(JetsonDetectError, match=r": alarms\.rules\.fire\.(min_confidence|roi|min_area_px|"
                                                r"clear_after_s): .*(nan|inf)"):
        load_config(write(tmp_path, "alarms: {enabled: true, rules: {fire: %s}}\n" % rule))


def test_a_huge_integer_is_not_a_finite_number(tmp_path):
    with pytest.raises(JetsonDetectError, match=r"alarms\.storage\.max_total_mb: 1000000000000.*\.\.\. is not a "
                                                r"finite number"):
        load_config(write(tmp_path, "alarms: {storage: {max_total_mb: %s}}\n" % ("1" + "0" * 400)))


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    "{0}: &{0} [{1}]\n".format(chr(ord("b") + i), ", ".join(["*" + chr(ord("a") + i)] * 10)) for i in range(8))


@pytest.mark.parametrize("text, words", [
    (BILLION_LAUGHS, "with its aliases expanded it would hold more than 100000 values at line 5"),
    ("a: " + "[" * 100000 + "]" * 100000 + "\n", "nested more than 32 deep at line 1"),
    ("a: &a x\nb: [" + ", ".join(["*a"] * 1001) + "]\n", "more than 1000 alias uses (*name) at line 2"),
])
def test_hostile_yaml_is_refused_before_it_is_built(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(JetsonDetectError) as caught:
        load_config(path)
    assert str(caught.value) == "{}: {}; refusing to expand it (simplify the file)".format(path, words)


def test_anchors_and_merge_keys_of_a_normal_config_still_work(tmp_path):
    config = load_config(write(tmp_path, "alarms:\n  enabled: true\n  rules:\n    fire: &r {window: 7}\n"
                                         "    smoke: {<<: *r, raise_after: 2}\n"))
    assert (config["alarms"]["rules"]["smoke"]["window"], config["alarms"]["rules"]["smoke"]["raise_after"]) == (7, 2)


def test_a_non_utf8_config_names_the_file_and_the_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("source: caméra\n".encode("latin-1"))
    with pytest.raises(JetsonDetectError) as caught:
        load_config(str(path))
    assert str(caught.value) == "{}: not UTF-8 text (byte 0xe9 at offset 11); save the config file as UTF-8".format(
        path)


def test_an_oversized_config_is_refused_before_parsing(tmp_path):
    path = write(tmp_path, "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(JetsonDetectError, match=r"larger than 1024 KiB, far more than any config file needs"):
        load_config(path)


def test_control_characters_give_one_line(tmp_path):
    path = write(tmp_path, "source: a\x00b\n")
    with pytest.raises(JetsonDetectError) as caught:
        load_config(path)
    assert str(caught.value).startswith(path + ": not valid YAML (") and "\n" not in str(caught.value)


@pytest.mark.parametrize("argv, key, value", [
    (["--conf", "0.25"], ("detection", "conf_thres"), 0.25),  # equal to the parser default: still wins
    (["--img-size", "640"], ("model", "img_size"), 640),
    (["--backend", "auto"], ("model", "backend"), "auto"),
    (["--precision", "fp16"], ("model", "precision"), "fp16"),
    (["--max-det", "300"], ("detection", "max_det"), 300),
    ([], ("detection", "conf_thres"), 0.9),  # absent: the file's value stays
    ([], ("model", "img_size"), 320),
])
def test_a_flag_given_on_the_command_line_wins_even_at_its_default_value(argv, key, value):
    from jetson_detect.cli import build_parser
    parser = build_parser("run")
    config = default_config()
    config["detection"]["conf_thres"], config["model"]["img_size"] = 0.9, 320
    config["model"]["backend"], config["model"]["precision"], config["detection"]["max_det"] = "onnxruntime", \
        "fp32", 5
    merged = apply_overrides(config, parser.parse_args(argv), defaults=parser_defaults(parser))
    assert merged[key[0]][key[1]] == value


def test_every_run_flag_with_a_default_records_that_it_was_given():
    """Flags defaulting to None are told apart by their value; the others must record (RecordGiven)."""
    from jetson_detect.app.config import RecordGiven
    from jetson_detect.cli import build_parser
    parser = build_parser("run")
    by_dest = {action.dest: action for action in parser._actions}
    for dest, _, flag in CLI_OVERRIDES:
        action = by_dest.get(dest)
        if action is not None and action.default not in (None, []):
            assert isinstance(action, RecordGiven), flag


@pytest.mark.parametrize("uri", ["http://0.0.0.0:99999", "http://0.0.0.0:-1", "http://0.0.0.0", "http://[::1]:8o"])
def test_a_web_view_port_outside_0_to_65535_is_refused_naming_the_output(tmp_path, uri):
    path = write(tmp_path, "outputs: ['{}']\n".format(uri))
    with pytest.raises(JetsonDetectError) as caught:
        load_config(path)
    assert str(caught.value) == "{}: outputs[0]: '{}': the port must be an integer from 0 to 65535, e.g. " \
                                "http://0.0.0.0:8080".format(path, uri)


def test_a_flag_output_port_is_checked_like_the_file_one():
    with pytest.raises(JetsonDetectError, match=r"^command line \(--output\): outputs\[0\]: 'http://x:70000'"):
        apply_overrides(default_config(), run_args(outputs=["http://x:70000"]))


def test_the_run_command_builds_its_detector_with_the_typed_flag_not_the_file(tmp_path, monkeypatch):
    """``--config X --conf 0.25`` (the parser default) through the run command's own path: the detector gets 0.25,
    where the file says 0.9; an absent --iou keeps the file's 0.3."""
    from jetson_detect.app import service
    from jetson_detect.cli import build_parser
    from jetson_detect.commands import run
    seen = {}
    monkeypatch.setattr(run, "create_detector_from_args", lambda args, **kw: seen.setdefault("args", args))
    monkeypatch.setattr(service, "run_watch", lambda config, detector, note, **kw: seen.setdefault("config", config))
    bus = REPO.parent / "shared" / "images" / "bus.jpg"
    path = write(tmp_path, "source: {}\ndetection: {{conf_thres: 0.9, iou_thres: 0.3}}\nmodel: {{img_size: 320}}\n"
                 .format(bus))
    run.run_config(build_parser("run").parse_args(["--config", path, "--conf", "0.25", "--img-size", "640"]),
                   run.StopSignals())
    assert (seen["args"].conf, seen["args"].iou, seen["args"].img_size) == (0.25, 0.3, 640)
    assert seen["config"]["detection"]["conf_thres"] == 0.25
