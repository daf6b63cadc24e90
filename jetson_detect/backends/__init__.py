"""Backends: where the network built by ``jetson_detect.model.network`` runs (TensorRT, or ONNX Runtime on CPU)."""
