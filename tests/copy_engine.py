"""An engine double with TensorRT 10's tensor API whose "inference" is real CUDA work: ``execute_async_v3``
enqueues device-to-device copies of fixed outputs on the stream it is given.

TensorRT cannot be installed on the GPU machines; with this double, the product's CUDA side (pinned buffers, async
copies, streams, events, the two-slot runner) runs for real. Used by ``tests/test_trt_cuda_gpu.py`` and
``scripts/check_cuda_release.py``. Needs cuda-python for the copies.
"""

import types

import numpy as np

TRT = types.SimpleNamespace(TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"))
DATA_TYPES = {np.float32: types.SimpleNamespace(name="FLOAT"), np.int32: types.SimpleNamespace(name="INT32")}


def cuda_runtime():
    """cuda-python's runtime module (12.x and 13.x names); ImportError when cuda-python is not installed."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


class CopyEngine(object):
    """``tensors``: (name, "in"|"out", shape, dtype) rows; ``outputs``: name → the array every inference yields;
    ``upload(array)`` puts an array on the device and returns its pointer (allocated once, outside any timing)."""

    def __init__(self, tensors, outputs, upload):
        self.rt = cuda_runtime()
        self.tensors = list(tensors)
        self.num_io_tensors = len(self.tensors)
        self.sources = dict((name, (upload(value), value.nbytes)) for name, value in outputs.items())

    def _tensor(self, name):
        return [t for t in self.tensors if t[0] == name][0]

    def get_tensor_name(self, index):
        return self.tensors[index][0]

    def get_tensor_mode(self, name):
        return self._tensor(name)[1]

    def get_tensor_shape(self, name):
        return self._tensor(name)[2]

    def get_tensor_dtype(self, name):
        return DATA_TYPES[self._tensor(name)[3]]

    def create_execution_context(self):
        return CopyContext(self)


class CopyContext(object):
    def __init__(self, engine):
        self.engine = engine
        self.addresses = {}

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def execute_async_v3(self, stream_handle):
        rt = self.engine.rt
        stream = rt.cudaStream_t(stream_handle)
        for name, (ptr, nbytes) in self.engine.sources.items():
            err, = rt.cudaMemcpyAsync(self.addresses[name], ptr, nbytes,
                                      rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream)
            assert int(err) == 0
        return True
