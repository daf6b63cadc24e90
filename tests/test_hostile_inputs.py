"""The catalogue of hostile inputs: each case names the input, the exit code and the words of its one-line error.

Classes covered (each also has focused tests in test_checkpoint.py, test_wts.py and test_config_load.py):
- `.pt` checkpoints: tensor views outside their storage (short storage, crafted offset or stride: a segfault
  before), negative strides, zero-stride or repeated views that would allocate far more than the file holds,
  storages whose size disagrees with the pickle, zip entries that declare gigabytes or inflate more than 100x,
  pickle globals a checkpoint does not need, BUILD on anything but the reader's inert placeholders (the numpy
  dtype type confusion), odd roots (an int, a list, a dict without a model, unsortable keys), 100,000-deep
  nesting, module cycles, non-tensor parameters, anchors that do not fit the strides, big-endian storages.
- Numbers in weights: NaN/Inf in any `.wts` or `.pt` tensor, negative BatchNorm variances, named by tensor, for
  every command (run, build, convert, eval, export-onnx).
- Numbers in configs: NaN/Inf (and integers too large for a float) in every numeric key, named by key; a NaN
  `min_confidence` no longer switches an alarm off with exit 0.
- Config files: alias bombs ("billion laughs"), deep nesting, too many aliases and oversized files refused before
  objects are built; non-UTF-8 bytes and control characters named with the file; web-view ports outside 0..65535.
- Flags vs config: a flag typed on the command line wins, also when it equals the parser default.
- Option ranges: --img-size, --batch, --conf, --iou, --max-det, --workspace-mib, --calib-images, --nc checked at
  parse time against one table (the plugin's ranges; NaN, inf and non-numbers included) for run, build, eval and
  export-onnx alike, and by create_detector for Python callers.
- eval: label files that match no image (warning, or an error when none match), labels without objects, NaN,
  negative or non-normalised label values, non-integer or out-of-range class ids, non-UTF-8 label files,
  detections without a box or with NaN/out-of-range values; the printed mAP says it is single-label.
- One list of image suffixes: run, eval and int8 calibration see the same images in a folder.
"""

import subprocess
import sys
from pathlib import Path

import crafted_files as cf
import numpy as np
import pytest

from jetson_detect.errors import EXIT_BAD_CONFIG, JetsonDetectError

from conftest import ROOT, SHARED, WTS

pytestmark = pytest.mark.shared

BUS = SHARED / "images" / "bus.jpg"
COCO64 = SHARED / "data" / "coco64"
REFERENCE_JSON = SHARED / "reference" / "yolov5n" / "coco64"


def _nan_alarm_config(tmp):
    text = (ROOT / "configs" / "fire_smoke.yaml").read_text().replace(
        "fire: {min_confidence: 0.4}", "fire: {min_confidence: .nan}")
    assert ".nan" in text
    path = tmp / "nan_alarm.yaml"
    path.write_text(text)
    return path


def _bomb_config(tmp):
    path = tmp / "bomb.yaml"
    path.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        "{0}: &{0} [{1}]\n".format(chr(ord("b") + i), ", ".join(["*" + chr(ord("a") + i)] * 10)) for i in range(8)))
    return path


def _latin1_config(tmp):
    path = tmp / "latin1.yaml"
    path.write_bytes("source: caméra\n".encode("latin-1"))
    return path


def _nan_wts(tmp):
    lines = WTS.read_text(encoding="ascii").splitlines(True)
    name, count, first, rest = lines[1].split(" ", 3)
    lines[1] = " ".join([name, count, "7fc00000", rest])
    path = tmp / "nan.wts"
    path.write_text("".join(lines), encoding="ascii")
    return path


def _tiny_pt(tmp, values, name="tiny.pt"):
    root, storages = cf.tiny_model(values)
    return Path(cf.write_checkpoint(tmp / name, root, storages))


def _strided_pt(tmp):
    ref = cf.tensor(cf.storage("FloatStorage", "0", 6), 0, (2, 2), (1, 1 << 40))
    return Path(cf.write_checkpoint(tmp / "stride.pt", cf.dct({"model": ref}), {"0": np.zeros(6, np.float32)}))


def _labels(tmp, text):
    folder = tmp / "labels"
    folder.mkdir()
    for image in sorted((COCO64 / "images").glob("*.jpg")):
        (folder / (image.stem + ".txt")).write_text("0 0.5 0.5 0.2 0.2\n")
    first = sorted((COCO64 / "images").glob("*.jpg"))[0].stem
    (folder / (first + ".txt")).write_text(text)
    return folder


def _json_without_box(tmp):
    folder = tmp / "json"
    folder.mkdir()
    for image in sorted((COCO64 / "images").glob("*.jpg")):
        (folder / (image.stem + ".json")).write_text('{"detections": [{"class_id": 0, "confidence": 0.9}]}')
    return folder


def _eval(labels, *extra):
    return ["eval", "--images", COCO64 / "images", "--labels", labels] + list(extra)


# (case, argv builder (tmp → argv), exit code, words of the one-line error); a bad --config exits EXIT_BAD_CONFIG
# (78), which the systemd unit does not restart on
CLI_CASES = [
    ("nan-min-confidence-in-config", lambda t: ["--config", _nan_alarm_config(t), "--source", BUS, "--weights", WTS],
     EXIT_BAD_CONFIG, ["alarms.rules.fire.min_confidence: nan is not a finite number"]),
    ("yaml-alias-bomb", lambda t: ["--config", _bomb_config(t)], EXIT_BAD_CONFIG,
     ["with its aliases expanded it would hold more than 100000 values"]),
    ("non-utf8-config", lambda t: ["--config", _latin1_config(t)], EXIT_BAD_CONFIG,
     ["latin1.yaml: not UTF-8 text (byte 0xe9"]),
    ("yaml-alias-bomb-as-model-cfg", lambda t: ["--source", BUS, "--weights", WTS, "--cfg", _bomb_config(t)], 2,
     ["bomb.yaml: with its aliases expanded it would hold more than 100000 values"]),
    ("web-port-out-of-range-before-the-model", lambda t: ["--source", BUS, "--weights", WTS, "--output",
                                                          "http://127.0.0.1:99999"], 2,
     ["output http://127.0.0.1:99999 port 99999: must be an integer from 0 to 65535"]),
    ("empty-http-token-before-the-model", lambda t: ["--source", BUS, "--weights", WTS, "--output",
                                                     "http://127.0.0.1:0", "--http-token", ""], 2,
     ["--http-token is empty"]),
    ("nan-conf-flag", lambda t: ["--source", BUS, "--weights", WTS, "--conf", "nan"], 2,
     ["--conf nan: must be a finite number"]),
    ("conf-1-refused-like-the-plugin", lambda t: ["--source", BUS, "--weights", WTS, "--conf", "1"], 2,
     ["--conf 1.0: must be a number >= 0 and < 1"]),
    ("build-checks-iou", lambda t: ["build", "--weights", WTS, "--iou", "1.5"], 2,
     ["--iou 1.5: must be a number from 0 to 1"]),
    ("img-size-too-large", lambda t: ["--source", BUS, "--weights", WTS, "--img-size", "8192"], 2,
     ["--img-size 8192: must be a multiple of 32 from 32 to 4096"]),
    ("export-batch-0", lambda t: ["export-onnx", "--weights", WTS, "--batch", "0", "-o", t / "x.onnx"], 2,
     ["--batch 0: must be an integer from 1 to 64"]),
    ("max-det-not-a-number", lambda t: ["eval", "--images", t, "--labels", t, "--max-det", "many"], 2,
     ["--max-det many: must be an integer from 1 to 16384"]),
    ("nan-in-wts", lambda t: ["--source", BUS, "--weights", _nan_wts(t), "--backend", "onnxruntime"], 2,
     ["nan.wts: line 2: tensor 'model.0.conv.weight' holds NaN or infinite values (1 of 1728)"]),
    ("negative-bn-variance-in-pt-convert", lambda t: ["convert", _tiny_pt(t, {
        "model.0.bn.running_var": np.array([1.0, -2.0], np.float32)})], 2,
     ["tensor 'model.0.bn.running_var' holds a negative BatchNorm variance (-2.0)"]),
    ("crafted-stride-pt", lambda t: ["convert", _strided_pt(t)], 2, ["reaches element 1099511627777"]),
    ("eval-labels-match-no-image", lambda t: _eval(t, "--from-json", REFERENCE_JSON), 2,
     ["none of its 0 label files (<image name>.txt) matches one of the 64 images"]),
    ("eval-nan-label-size", lambda t: _eval(_labels(t, "0 0.5 0.5 nan 0.1\n"), "--from-json", REFERENCE_JSON), 2,
     ["line 1: NaN or infinite value"]),
    ("eval-detection-without-box", lambda t: _eval(COCO64 / "labels", "--from-json", _json_without_box(t)), 2,
     ["detection 0 needs 'box' (4 numbers, xyxy pixels)"]),
]


@pytest.mark.parametrize("case, argv, code, words", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_hostile_cli_input_gives_one_line_and_its_exit_code(tmp_path, case, argv, code, words):
    done = subprocess.run([sys.executable, "-m", "jetson_detect"] + [str(a) for a in argv(tmp_path)],
                          cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=120)
    assert "Traceback" not in done.stderr
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word in lines[0]


# Label files, read through the library (cheap): (case, label text, words of the error)
LABEL_CASES = [
    ("negative-width", "0 0.5 0.5 -0.1 0.2\n", "line 1: box width and height must be > 0"),
    ("zero-height", "0 0.5 0.5 0.1 0\n", "line 1: box width and height must be > 0"),
    ("infinite-centre", "0 inf 0.5 0.1 0.1\n", "line 1: NaN or infinite value"),
    ("pixels-not-normalised", "0 320 240 50 60\n", "line 1: coordinates must be normalised to [0, 1]"),
    ("fractional-class", "1.5 0.5 0.5 0.1 0.1\n", "line 1: class id 1.5 is not an integer"),
    ("class-out-of-range", "\n80 0.5 0.5 0.1 0.1\n", "line 2: class 80 is outside the model's 80 classes (0 to 79)"),
    ("negative-class", "-1 0.5 0.5 0.1 0.1\n", "line 1: class -1 is outside the model's 80 classes"),
    ("four-fields", "0 0.5 0.5 0.1\n", "line 1: expected 'class cx cy w h' (5 numbers, normalised)"),
    ("words", "fire 0.5 0.5 0.1 0.1\n", "line 1: expected 'class cx cy w h'"),
]


@pytest.mark.parametrize("case, text, words", LABEL_CASES, ids=[c[0] for c in LABEL_CASES])
def test_a_bad_label_line_is_an_error_naming_file_and_line(tmp_path, case, text, words):
    from jetson_detect.evaluation import read_yolo_labels
    path = tmp_path / "a.txt"
    path.write_text(text)
    with pytest.raises(JetsonDetectError) as caught:
        read_yolo_labels(str(path), 640, 480, 80)
    assert str(caught.value).startswith(str(path) + ": ") and words in str(caught.value)


def test_a_non_utf8_label_file_is_one_line(tmp_path):
    from jetson_detect.evaluation import read_yolo_labels
    path = tmp_path / "a.txt"
    path.write_bytes(b"0 0.5 0.5 0.1 0.1 \xff\n")
    with pytest.raises(JetsonDetectError, match="cannot read this label file .*it must be UTF-8 text"):
        read_yolo_labels(str(path), 640, 480, 80)


def _fake_eval(tmp_path, label_names, detections=None, warnings=None):
    """evaluate_folder on two blank 'images' with the given label files (class 0 box in the middle)."""
    from jetson_detect.evaluation import evaluate_folder
    from jetson_detect.math.nms import Detections
    labels = tmp_path / "labels"
    labels.mkdir()
    for name in label_names:
        (labels / name).write_text("0 0.5 0.5 0.5 0.5\n")
    found = detections
    if found is None:
        found = Detections(np.array([[160, 120, 480, 360]], np.float32), np.array([0.9], np.float32),
                           np.array([0], np.int32))
    return evaluate_folder([str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")], str(labels), ["fire", "smoke"],
                           lambda image: found, lambda path: np.zeros((480, 640, 3), np.uint8),
                           warn=(warnings if warnings is not None else []).append)


def test_label_files_matching_no_image_are_counted_in_a_warning(tmp_path):
    warnings = []
    result = _fake_eval(tmp_path, ["a.txt", "b.txt", "c.txt", "d.txt"], warnings=warnings)
    assert result.instances == 2 and result.map50 == pytest.approx(1.0)
    assert warnings == ["warning: 2 of the 4 label files in {} match no image and are not scored (e.g. "
                        "c.txt)".format(tmp_path / "labels")]


def test_labels_of_other_images_only_are_an_error_not_a_map_of_zero(tmp_path):
    with pytest.raises(JetsonDetectError, match=r"none of its 2 label files \(<image name>.txt\) matches one of the "
                                                r"2 images"):
        _fake_eval(tmp_path, ["x.txt", "y.txt"])


def test_empty_label_files_are_an_error_not_a_map_of_zero(tmp_path):
    from jetson_detect.evaluation import evaluate_folder
    from jetson_detect.math.nms import Detections
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("\n")
    with pytest.raises(JetsonDetectError, match="the label files of these images hold no objects"):
        evaluate_folder([str(tmp_path / "a.jpg")], str(tmp_path / "labels"), ["fire"], lambda image: Detections.empty(),
                        lambda path: np.zeros((4, 4, 3), np.uint8))


def test_no_detections_at_all_is_said_next_to_the_zero(tmp_path):
    from jetson_detect.math.nms import Detections
    warnings = []
    result = _fake_eval(tmp_path, ["a.txt", "b.txt"], detections=Detections.empty(), warnings=warnings)
    assert result.map50 == 0.0
    assert warnings == ["warning: no detections on any of the 2 images: the mAP is 0"]


@pytest.mark.parametrize("boxes, scores, classes, words", [
    (np.zeros((1, 3)), [0.5], [0], "1 detections but boxes of shape (1, 3) and 1 class ids"),
    ([[0, 0, np.nan, 1]], [0.5], [0], "a NaN or infinite box or confidence"),
    ([[0, 0, 1, 1]], [np.inf], [0], "a NaN or infinite box or confidence"),
    ([[0, 0, 1, 1]], [0.5], [7], "a class id outside 0 to 1"),
    ([[0, 0, 1, 1]], [1.5], [0], "a confidence outside [0, 1]"),
])
def test_garbage_detections_are_refused_before_scoring(tmp_path, boxes, scores, classes, words):
    from jetson_detect.math.nms import Detections
    bad = Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(classes, np.int32))
    with pytest.raises(JetsonDetectError) as caught:
        _fake_eval(tmp_path, ["a.txt", "b.txt"], detections=bad)
    assert words in str(caught.value)


def test_the_printed_map_says_it_is_single_label():
    from jetson_detect.evaluation import EvalResult, format_result
    text = format_result(EvalResult(0.3, 0.5, [("fire", 3, 0.5, 0.3)], 2, 3))
    assert text.splitlines()[-1] == ("scoring: single-label, each box scored with its best class only, as the "
                                     "deployed plugin outputs it; YOLOv5's val.py defaults to multi-label NMS (a "
                                     "box may count for several classes)")


def test_every_folder_reader_takes_the_same_image_files(tmp_path):
    from jetson_detect.backends.calibrator import list_calibration_images
    from jetson_detect.evaluation import list_images
    from jetson_detect.video.sources import open_source
    for name in ("a.webp", "b.TIF", "c.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    expected = [str(tmp_path / n) for n in ("a.webp", "b.TIF", "c.jpg")]
    assert list_images(str(tmp_path)) == expected
    assert list_calibration_images(str(tmp_path)) == expected
    assert open_source(str(tmp_path)).paths == expected


@pytest.mark.parametrize("flag, text, words", [
    ("--conf", "inf", "--conf inf: must be a finite number: a number >= 0 and < 1"),
    ("--conf", "-0.1", "--conf -0.1: must be a number >= 0 and < 1"),
    ("--iou", "nan", "--iou nan: must be a finite number: a number from 0 to 1"),
    ("--img-size", "100", "--img-size 100: must be a positive multiple of 32"),
    ("--img-size", "0", "--img-size 0: must be a multiple of 32 from 32 to 4096"),
    ("--img-size", "640.0", "--img-size 640.0: must be a multiple of 32 from 32 to 4096"),
    ("--max-det", "16385", "--max-det 16385: must be an integer from 1 to 16384"),
    ("--workspace-mib", "0", "--workspace-mib 0: must be an integer from 1 to 1048576"),
    ("--calib-images", "-5", "--calib-images -5: must be an integer from 1 to 100000"),
    ("--batch", "65", "--batch 65: must be an integer from 1 to 64"),
])
def test_every_numeric_flag_is_range_checked_while_parsing(flag, text, words):
    from jetson_detect.cli import build_parser
    command = "build" if flag in ("--calib-images", "--batch") else "run"
    with pytest.raises(JetsonDetectError) as caught:
        build_parser(command).parse_args([flag, text])
    assert str(caught.value) == words


def test_the_detector_factory_uses_the_same_ranges():
    from jetson_detect.backends.detector import create_detector
    with pytest.raises(JetsonDetectError, match=r"^--conf nan: must be a finite number"):
        create_detector(str(WTS), backend="onnxruntime", conf_thres=float("nan"))
    with pytest.raises(JetsonDetectError, match=r"^--max-det 0: must be an integer from 1 to 16384$"):
        create_detector(str(WTS), backend="onnxruntime", max_det=0)


def test_the_ranges_are_inside_what_the_plugin_accepts():
    from jetson_detect import option_ranges
    from jetson_detect.model.decode_nms import MAX_PRE_NMS_TOP_K
    assert option_ranges.CONF_THRES.high_open and option_ranges.CONF_THRES.high == 1.0  # plugin: [0, 1)
    assert (option_ranges.IOU_THRES.low, option_ranges.IOU_THRES.high) == (0.0, 1.0)
    assert option_ranges.MAX_DET.high == MAX_PRE_NMS_TOP_K  # never more than the candidates the plugin keeps


def test_a_label_file_with_a_byte_order_mark_is_read(tmp_path):
    from jetson_detect.evaluation import read_yolo_labels
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf1 0.5 0.5 0.5 0.5\r\n")
    labels = read_yolo_labels(str(path), 640, 480, 80)
    assert labels.class_ids.tolist() == [1] and labels.boxes.tolist() == [[160.0, 120.0, 480.0, 360.0]]
