"""Runs a network built through the CPU twin with ONNX Runtime: the default backend where TensorRT is absent."""

import os
from typing import Any, Dict, Optional

import numpy as np

from ..errors import JetsonDetectError
from .onnx_network import HostStage, OnnxNetwork


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise JetsonDetectError("onnxruntime is not installed: pip install 'jetson_detect[cpu]' (or "
                                "'onnxruntime onnx') to use the CPU backend") from None
    return onnxruntime


class OnnxRuntimeEngine(object):
    """An ONNX Runtime session for one ``OnnxNetwork`` plus its host stage (plugin NMS)."""

    def __init__(self, network: OnnxNetwork, threads: Optional[int] = None) -> None:
        ort = _import_onnxruntime()
        self.host_stage: HostStage
        self.model, self.host_stage = network.to_onnx()
        options = ort.SessionOptions()
        # ONNX Runtime's memory pattern pre-plans one block for every activation of a run: for a batch of 4 cameras
        # it cost 0.06x of a camera's RSS more than plain arena reuse, at the same speed (BENCHMARKS.md,
        # several cameras), and a Nano has 4 GB for everything.
        options.enable_mem_pattern = False
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(self.model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])
        self.input_name = network.inputs[0].name
        self.input_shape = tuple(network.inputs[0].shape)
        self.input_dtype = np.dtype(network.inputs[0].dtype)  # float32, or float16 for an FP16-typed network

    def run_graph(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """The ONNX part only: graph outputs (``decoded``, marked heads) by name."""
        if tuple(batch.shape) != self.input_shape:
            raise JetsonDetectError("input batch has shape {}, the network expects {}".format(
                tuple(batch.shape), self.input_shape))
        names = self.host_stage.graph_outputs
        values = self.session.run(names, {self.input_name: np.ascontiguousarray(batch, self.input_dtype)})
        return dict(zip(names, values))

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """Every output: the plugin's (num_detections, boxes, scores, classes) and the graph's (``decoded``)."""
        return self.host_stage.run(self.run_graph(batch))
