"""The model layer stands alone: no backend, OpenCV, TensorRT or CUDA import; version differences come in."""

import ast
from pathlib import Path

from jetson_detect.backends import detector, onnx_network, trt_compat
from jetson_detect.model import loader
from jetson_detect.model.blocks import BuildOptions
from jetson_detect.model.network import build_network

PACKAGE = Path(__file__).resolve().parents[1] / "jetson_detect"
FORBIDDEN = ("cv2", "tensorrt", "pycuda", "cuda", "jetson_detect.backends", "jetson_detect.video",
             "jetson_detect.app", "jetson_detect.plugin")


def _imports(path):
    """Absolute module names a file imports (relative imports resolved against the package)."""
    tree = ast.parse(path.read_text())
    package = "jetson_detect." + path.parent.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = base + ("." + node.module if node.module else "")
                for alias in node.names:
                    yield module + "." + alias.name if not node.module else module
            else:
                yield node.module or ""


def test_model_and_math_import_no_backend_opencv_tensorrt_or_cuda():
    offending = []
    for folder in ("model", "math"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            for name in _imports(path):
                if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                    offending.append("{}: {}".format(path.name, name))
    assert offending == []


def test_load_model_lives_in_the_model_layer():
    assert detector.load_model is loader.load_model


def test_the_version_specific_calls_come_in_through_compat(coco_weights, coco_spec):
    calls = []

    class RecordingCompat(object):
        def resize_mode_nearest(self, trt):
            calls.append("resize_mode_nearest")
            return trt_compat.resize_mode_nearest(trt)

        def create_plugin(self, trt, name, version, namespace, fields):
            calls.append("create_plugin " + name)
            return trt_compat.create_plugin(trt, name, version, namespace, fields)

        def add_plugin(self, trt, network, inputs, plugin):
            calls.append("add_plugin {}".format(len(inputs)))
            return trt_compat.add_plugin(trt, network, inputs, plugin)

    build_network(coco_spec, coco_weights, onnx_network.OnnxNetwork(), onnx_network,
                  BuildOptions(input_h=64, input_w=64), compat=RecordingCompat())
    assert calls == ["resize_mode_nearest", "resize_mode_nearest", "create_plugin YoloDecodeNMS", "add_plugin 3"]
