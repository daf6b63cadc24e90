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
     "model.img_size: 500 is not a multiple of 32; expected a multiple of 32 from 32 to 1280"),
    ("detection: {conf_thres: 1.5}\n",
     "detection.conf_thres: 1.5 is out of range; expected a number from 0 to 1"),
    ("detection: {conf_thres: yes}\n",
     "detection.conf_thres: True (bool) is not allowed; expected a number from 0 to 1"),
    ("detection: {conf: 0.3}\n",
     "detection.conf: unknown key; allowed keys: conf_thres, iou_thres, max_det, classes"),
    ("sources: [a]\n",
     "sources: unknown key; allowed keys: source, camera, outputs, http_token, save_json, model, detection, "
     "alarms, telemetry, logging, detect_fps, cameras"),
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
     "model, detection, alarms, telemetry, logging, detect_fps, cameras"),
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
    """The lead's run parser (when present) accepts the flags this table names, under the same dests."""
    cli = pytest.importorskip("jetson_detect.cli")
    parser = cli.build_parser("run")
    dests = {action.dest for action in parser._actions}
    for dest, _, flag in CLI_OVERRIDES:
        if dest in dests:
            assert flag in [o for a in parser._actions if a.dest == dest for o in a.option_strings]
    assert {"source", "weights", "conf", "iou", "img_size", "backend"} <= dests
