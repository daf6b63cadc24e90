"""jetson_detect: YOLOv5 rebuilt layer by layer for TensorRT on Jetson Nano, with a CPU (ONNX Runtime) twin."""

__version__ = "0.1.0"
