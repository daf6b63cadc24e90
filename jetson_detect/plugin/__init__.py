"""The YoloDecodeNMS TensorRT plugin: CUDA kernels (``kernels/``), the C++ plugin, its build and its loader."""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
KERNEL_DIR = PLUGIN_DIR / "kernels"
LIBRARY_NAME = "libyolo_decode_nms.so"
