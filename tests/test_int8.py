"""Explicit INT8: the Q/DQ wrapper's placement and keys, our calibration file, and the CPU backend's QDQ graph.

The accuracy of the QDQ graph on coco64 and fire_smoke against the FP32 graph is measured by
``scripts/bench_int8.py`` (BENCHMARKS.md); the test here checks the same graph on real images at a small size.
"""

import json
import shutil

import numpy as np
import pytest

from jetson_detect.backends import onnx_network, trt_compat
from jetson_detect.backends.detector import OnnxRuntimeDetector, create_detector, load_model
from jetson_detect.backends.int8_calibration import calibrate, int8_calibration, load_calibration
from jetson_detect.backends.qdq_network import QdqNetwork, QuantizationOptions
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.nms import box_iou_one_to_many
from jetson_detect.model.blocks import BuildOptions
from jetson_detect.model.network import build_network

from conftest import ROOT, SHARED, WTS

pytestmark = pytest.mark.shared

SMALL = BuildOptions(input_h=160, input_w=160, c3_fusion=False)


@pytest.fixture(scope="module")
def model():
    return load_model(str(WTS))


@pytest.fixture()
def calib_dir(tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(str(SHARED / "images" / name), str(folder / name))
    return folder


def observe(model, options=SMALL, quantization=None):
    network = onnx_network.OnnxNetwork()
    observer = QdqNetwork(network, onnx_network, observe=True, options=quantization)
    build_network(model[0], model[1], observer, onnx_network, options, compat=trt_compat)
    return network, observer


def test_the_quantized_build_uses_exactly_the_keys_the_calibration_saw(model):
    _, observer = observe(model)
    scales = dict((key, 0.05) for key in observer.keys())
    network = onnx_network.OnnxNetwork()
    quantized = QdqNetwork(network, onnx_network, scales=scales)
    build_network(model[0], model[1], quantized, onnx_network, SMALL, compat=trt_compat)
    assert quantized.keys() == observer.keys()
    kinds = [type(layer).__name__ for layer in network.layers]
    # one Q/DQ pair per keyed activation, one per convolution kernel (the three Detect kernels are float again)
    convs = kinds.count("ConvolutionLayer")
    assert kinds.count("QuantizeLayer") == len(observer.keys()) + convs


def test_residual_adds_and_concats_share_one_scale(model):
    _, observer = observe(model)
    groups = observer.groups()
    sizes = sorted((len(keys) for keys in groups.values()), reverse=True)
    assert len(groups) < len(observer.keys()) and sizes[0] >= 3
    _, separate = observe(model, quantization=QuantizationOptions(shared_scales=False))
    assert len(separate.groups()) == len(separate.keys())


def test_the_detect_convolutions_stay_float_and_the_rest_is_int8(model):
    network = onnx_network.OnnxNetwork()
    _, observer = observe(model)
    quantized = QdqNetwork(network, onnx_network, scales=dict((k, 0.05) for k in observer.keys()))
    build_network(model[0], model[1], quantized, onnx_network, SMALL, compat=trt_compat)
    convs = [layer for layer in network.layers if isinstance(layer, onnx_network.ConvolutionLayer)]
    float_convs = [c.name for c in convs if not isinstance(c.inputs[1].producer, onnx_network.DequantizeLayer)]
    assert float_convs == ["model.24.m.0", "model.24.m.1", "model.24.m.2"]


def test_calibration_file_round_trips_and_is_reused(model, calib_dir, tmp_path):
    cache = tmp_path / "int8.json"
    made = int8_calibration(model[0], model[1], str(WTS), SMALL, QuantizationOptions(), str(calib_dir), str(cache),
                            "percentile", 2)
    table = json.loads(cache.read_text())
    assert table["images"] == 2 and table["fingerprint"]["input_size"] == [160, 160]
    assert table["fingerprint"]["method"] == "percentile" and set(table["scales"]) == set(made.scales)
    again = int8_calibration(model[0], model[1], str(WTS), SMALL, QuantizationOptions(), None, str(cache),
                             "percentile", 2)
    assert again.scales == made.scales and again.affine == made.affine


@pytest.mark.parametrize("change, field", [
    (lambda o, q, m: (o._replace(input_h=192, input_w=192), q, m), "input_size"),
    (lambda o, q, m: (o, QuantizationOptions(silu=False), m), "quantization"),
    (lambda o, q, m: (o, q, "max"), "method"),
    (lambda o, q, m: (o._replace(c3_fusion=True), q, m), "c3_fusion"),
])
def test_a_stale_calibration_file_is_refused_naming_what_changed(model, calib_dir, tmp_path, change, field):
    cache = tmp_path / "int8.json"
    int8_calibration(model[0], model[1], str(WTS), SMALL, QuantizationOptions(), str(calib_dir), str(cache),
                     "percentile", 2)
    options, quantization, method = change(SMALL, QuantizationOptions(), "percentile")
    with pytest.raises(JetsonDetectError, match=r"^--calib-cache .*int8\.json: made for {} .*calibrate again".format(
            field)):
        int8_calibration(model[0], model[1], str(WTS), options, quantization, None, str(cache), method, 2)


def test_a_calibration_file_of_other_weights_is_refused(model, calib_dir, tmp_path):
    cache = tmp_path / "int8.json"
    int8_calibration(model[0], model[1], str(WTS), SMALL, QuantizationOptions(), str(calib_dir), str(cache),
                     "percentile", 2)
    other = tmp_path / "copy.wts"
    other.write_bytes(WTS.read_bytes() + b"\n")
    with pytest.raises(JetsonDetectError, match="made for model_sha256"):
        int8_calibration(model[0], model[1], str(other), SMALL, QuantizationOptions(), None, str(cache),
                         "percentile", 2)


@pytest.mark.parametrize("content, words", [
    (b"TRT-8201-EntropyCalibration2\n", "not a readable calibration file"),
    (b'{"format": "something else"}', "not a jetson_detect INT8 calibration file"),
])
def test_a_foreign_calibration_file_is_refused(content, words, tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with pytest.raises(JetsonDetectError, match=words):
        load_calibration(str(path), {"method": "percentile"})


def test_scales_that_are_not_positive_are_refused(model, calib_dir, tmp_path):
    cache = tmp_path / "int8.json"
    int8_calibration(model[0], model[1], str(WTS), SMALL, QuantizationOptions(), str(calib_dir), str(cache),
                     "percentile", 2)
    table = json.loads(cache.read_text())
    table["scales"]["a0"] = -1.0
    cache.write_text(json.dumps(table))
    with pytest.raises(JetsonDetectError, match="scales are missing or out of range"):
        int8_calibration(model[0], model[1], str(WTS), SMALL, QuantizationOptions(), None, str(cache),
                         "percentile", 2)


def test_int8_needs_images_or_a_calibration_file(tmp_path):
    with pytest.raises(JetsonDetectError, match=r"^--precision int8 needs --calib-dir DIR"):
        create_detector(str(WTS), backend="onnxruntime", img_size=160, precision="int8")


def test_the_int8_graph_runs_integer_kernels_and_finds_what_fp32_finds(model, calib_dir, images):
    calibration = calibrate(model[0], model[1], SMALL._replace(input_h=320, input_w=320), QuantizationOptions(),
                            [OnnxRuntimeDetector(model[0], model[1], SMALL._replace(
                                input_h=320, input_w=320)).preprocess(img)[0] for img in images], "percentile")
    options = SMALL._replace(input_h=320, input_w=320)
    int8 = OnnxRuntimeDetector(model[0], model[1], options, int8_scales=calibration.scales,
                               quantization=QuantizationOptions(), affine=calibration.affine)
    fp32 = OnnxRuntimeDetector(model[0], model[1], options)
    ops = [node.op_type for node in int8.engine.model.graph.node]
    assert ops.count("QuantizeLinear") > 100 and int8.backend_name == "onnxruntime-int8"
    for image in images:
        a, b = fp32.detect(image), int8.detect(image)
        strong = a.scores > 0.5
        # every confident FP32 box is found by INT8 with the same class
        for box, cls in zip(a.boxes[strong], a.class_ids[strong]):
            ious = box_iou_one_to_many(box, b.boxes) if len(b.boxes) else np.zeros(0)
            assert ious.size and ious.max() > 0.8 and b.class_ids[int(np.argmax(ious))] == cls



def quantized_graph(model, monkeypatch=None, lower=True):
    """The INT8 ONNX graph of yolov5n at 160 with uniform scales (placement, not accuracy, is under test)."""
    _, observer = observe(model)
    network = onnx_network.OnnxNetwork()
    quantized = QdqNetwork(network, onnx_network, scales=dict((k, 0.05) for k in observer.keys()))
    build_network(model[0], model[1], quantized, onnx_network, SMALL, compat=trt_compat)
    if not lower:
        monkeypatch.setattr(onnx_network, "_SPACE_TO_DEPTH_MAX_CHANNELS", 0)
    return network.to_onnx()[0]


def run_graph(model_proto, x):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(["decoded"], {session.get_inputs()[0].name: x})[0]


def test_the_int8_stem_runs_as_space_to_depth_with_the_same_values(model, monkeypatch, images):
    lowered = quantized_graph(model)
    stem = [n for n in lowered.graph.node if n.op_type == "Conv"][0]
    attrs = dict((a.name, list(a.ints)) for a in stem.attribute)
    assert [n.op_type for n in lowered.graph.node].count("SpaceToDepth") == 1
    assert attrs["kernel_shape"] == [3, 3] and attrs["strides"] == [1, 1] and attrs["pads"] == [1, 1, 1, 1]
    plain = quantized_graph(model, monkeypatch, lower=False)
    assert "SpaceToDepth" not in [n.op_type for n in plain.graph.node]
    x = OnnxRuntimeDetector(model[0], model[1], SMALL).preprocess(images[0])[0]
    # ONNX Runtime's own 6x6/2 convolution on the same integers is the oracle: equal to the last bit
    np.testing.assert_array_equal(run_graph(lowered, x), run_graph(plain, x))


def test_float_graphs_keep_the_strided_stem():
    fp32 = OnnxRuntimeDetector(*load_model(str(WTS)), SMALL).engine.model
    assert "SpaceToDepth" not in [n.op_type for n in fp32.graph.node]


def test_every_node_of_the_int8_graph_feeds_an_output(model):
    graph = quantized_graph(model).graph
    read = set(name for node in graph.node for name in node.input) | set(o.name for o in graph.output)
    unused = [node.name for node in graph.node if not any(name in read for name in node.output)]
    assert unused == []
    # the Detect kernels are float constants: no int8 copy of them is left behind
    constants = set(i.name for i in graph.initializer)
    kernel_quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in constants]
    assert len(kernel_quantizers) == len([n for n in graph.node if n.op_type == "Conv"]) - 3


def test_the_float_heads_read_a_product_of_their_own(model):
    graph = quantized_graph(model).graph
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    producer = dict((out, node) for node in graph.node for out in node.output)
    heads = [n for n in graph.node if n.op_type == "Conv" and n.name.startswith("model.24.")]
    assert len(heads) == 3
    for head in heads:
        product = producer[head.input[0]]
        assert product.op_type == "Mul" and [r.name for r in readers[product.output[0]]] == [head.name]
        # P3's and P4's SiLU product on the same inputs also feeds the next convolution, through a Quantize only
        # (fused into an integer multiply); P5's has no other reader and is gone
        twins = [n for n in graph.node
                 if n.op_type == "Mul" and list(n.input) == list(product.input) and n is not product]
        assert len(twins) == (0 if head.name == "model.24.m.2" else 1)
        for twin in twins:
            assert [r.op_type for r in readers[twin.output[0]]] == ["QuantizeLinear"]


@pytest.mark.parametrize("weights, data, calib_dir, size, budget", [
    # the budgets: mAP50-95 on coco64 at 640 (calibrated on coco64: all the COCO data here), mAP50 on
    # fire_smoke for the shipped model at its configured 320 input, calibrated on disjoint training images
    (WTS, "coco64", "coco64/images", 640, (0.010, None)),
    ("weights/fire_smoke_yolov5n.pt", "fire_smoke", "fire_smoke_train/images", 320, (None, 0.015)),
])
def test_int8_detections_stay_within_the_accuracy_budget(weights, data, calib_dir, size, budget):
    import cv2

    from jetson_detect.backends.calibrator import CalibrationBatches, list_calibration_images
    from jetson_detect.evaluation import evaluate_folder, list_images
    spec, tensors = load_model(str(ROOT / weights))
    options = BuildOptions(input_h=size, input_w=size, c3_fusion=False, conf_thres=0.001, iou_thres=0.6,
                           pre_nms_top_k=16384)
    batches = CalibrationBatches(list_calibration_images(str(SHARED / "data" / calib_dir), 64), size, 1)
    calibration = calibrate(spec, tensors, options, QuantizationOptions(),
                            [batches.batch(i) for i in range(len(batches))], "percentile")
    scores = []
    for detector in (OnnxRuntimeDetector(spec, tensors, options),
                     OnnxRuntimeDetector(spec, tensors, options, int8_scales=calibration.scales,
                                         quantization=QuantizationOptions(), affine=calibration.affine)):
        result = evaluate_folder(list_images(str(SHARED / "data" / data / "images")),
                                 str(SHARED / "data" / data / "labels"), detector.names, detector.detect,
                                 lambda path: cv2.imread(path, cv2.IMREAD_COLOR))
        scores.append((result.map50_95, result.map50))
    (fp32, fp32_50), (int8, int8_50) = scores
    assert fp32 > 0.25 and fp32_50 > 0.45  # a real model on real data, not an empty evaluation
    if budget[0] is not None:
        assert fp32 - int8 <= budget[0]
    if budget[1] is not None:
        assert fp32_50 - int8_50 <= budget[1]


def test_export_onnx_and_run_share_one_calibration_file(calib_dir, tmp_path):
    import subprocess
    import sys

    cache, out, log = tmp_path / "int8.json", tmp_path / "int8.onnx", tmp_path / "d.jsonl"
    common = ["--weights", str(WTS), "--img-size", "160", "--precision", "int8"]
    made = subprocess.run([sys.executable, "-m", "jetson_detect", "export-onnx"] + common + [
        "--calib-dir", str(calib_dir), "--calib-cache", str(cache), "-o", str(out)], cwd=str(ROOT),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "INT8" in made.stderr and cache.is_file() and out.stat().st_size > 0
    used = subprocess.run([sys.executable, "-m", "jetson_detect", "--source", str(SHARED / "images" / "bus.jpg")] +
                          common + ["--calib-cache", str(cache), "--backend", "onnxruntime", "--save-json", str(log)],
                          cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=120)
    assert used.returncode == 0, used.stderr
    assert "int8: scales from {}".format(cache) in used.stderr
    assert json.loads(log.read_text().splitlines()[0])["detections"]


def test_eval_scores_the_int8_graph_with_its_calibration_file(calib_dir, tmp_path):
    import subprocess
    import sys

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for stem in sorted(p.stem for p in (SHARED / "data" / "coco64" / "labels").glob("*.txt"))[:4]:
        shutil.copy(str(SHARED / "data" / "coco64" / "images" / (stem + ".jpg")), str(images))
        shutil.copy(str(SHARED / "data" / "coco64" / "labels" / (stem + ".txt")), str(labels))
    cache, figures = tmp_path / "int8.json", tmp_path / "eval.json"
    command = [sys.executable, "-m", "jetson_detect", "eval", "--weights", str(WTS), "--img-size", "160",
               "--images", str(images), "--labels", str(labels), "--backend", "onnxruntime"]

    def run(*extra):
        done = subprocess.run(command + list(extra), cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done
    first = run("--precision", "int8", "--calib-dir", str(calib_dir), "--calib-cache", str(cache),
                "--save-json", str(figures))
    assert "onnxruntime-int8" in first.stdout and cache.is_file()
    assert json.loads(figures.read_text())["instances"] > 0
    again = run("--precision", "int8", "--calib-cache", str(cache))
    assert "int8: scales from {}".format(cache) in again.stderr and "onnxruntime-int8" in again.stdout
    assert "onnxruntime-int8" not in run().stdout  # without --precision int8: the FP32 graph


def test_eval_int8_without_images_or_a_file_is_one_line(tmp_path):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "jetson_detect", "eval", "--weights", str(WTS), "--img-size", "160",
                           "--images", str(SHARED / "images"), "--labels", str(tmp_path), "--backend", "onnxruntime",
                           "--precision", "int8"], cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--precision int8 needs --calib-dir DIR" in done.stderr


def test_calibration_without_onnxruntime_says_how_to_get_it_without_pip_opencv(model, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(JetsonDetectError, match=r"pip3 install onnx onnxruntime, or calibrate on a PC") as info:
        calibrate(model[0], model[1], SMALL, QuantizationOptions(), [], "percentile")
    assert "[cpu]" not in str(info.value) and "opencv" not in str(info.value).lower()
