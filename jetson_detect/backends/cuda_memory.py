"""CUDA memory behind one small interface: pycuda (Jetson Nano, CUDA 10.2, Python 3.6) or cuda-python (x86).

Everything TensorRT's runtime needs from CUDA: page-locked host buffers, device buffers, streams with async
copies, events for GPU timing, the device's name and compute capability, and ``activate()``, which makes the
device's context current on the calling thread (inference may run on a thread other than the one that loaded the
engine). Both implementations use the device's *primary* context, the one TensorRT's runtime API calls use.
For the GPU pre-processing: ``compile_kernel`` (pycuda: nvcc through ``SourceModule``; cuda-python: NVRTC) and
``launch_kernel`` on a stream, with arguments given as NumPy scalars (``np.uintp`` for device pointers).
Reference: ``../shared/TRT_COMPAT.md`` §7.
"""

import ctypes
import importlib
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import JetsonDetectError
from .gpu_arch import arch_name

CUDA_APIS = ("auto", "pycuda", "cuda-python")


class CudaMemory(object):
    """The interface: what the TensorRT runtime and the INT8 calibrator use. Streams and events are opaque."""

    api = "abstract"

    def device_name(self) -> str:
        raise NotImplementedError

    def compute_capability(self) -> Tuple[int, int]:
        raise NotImplementedError

    @contextmanager
    def activate(self) -> Iterator[None]:
        """Make this device's context current on the calling thread for the ``with`` block."""
        raise NotImplementedError
        yield  # pragma: no cover

    def pinned_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        """A page-locked host array (needed for truly asynchronous copies); freed by ``close``."""
        raise NotImplementedError

    def device_alloc(self, nbytes: int) -> int:
        """A device buffer of ``nbytes``; returns its address; freed by ``close``."""
        raise NotImplementedError

    def stream_create(self) -> Any:
        """A CUDA stream; destroyed by ``stream_destroy`` or ``close``."""
        raise NotImplementedError

    def stream_destroy(self, stream: Any) -> None:
        """Destroy one stream from ``stream_create`` before ``close`` (nothing may still run on it)."""
        raise NotImplementedError

    def stream_handle(self, stream: Any) -> int:
        """The integer handle TensorRT's ``execute_async_*`` takes."""
        raise NotImplementedError

    def stream_synchronize(self, stream: Any) -> None:
        raise NotImplementedError

    def copy_htod_async(self, device_ptr: int, host: np.ndarray, stream: Any) -> None:
        raise NotImplementedError

    def copy_dtoh_async(self, host: np.ndarray, device_ptr: int, stream: Any) -> None:
        raise NotImplementedError

    def copy_htod(self, device_ptr: int, host: np.ndarray) -> None:
        """Synchronous host → device copy (calibration batches)."""
        raise NotImplementedError

    def event_create(self) -> Any:
        """A timing event; destroyed by ``event_destroy`` or ``close``."""
        raise NotImplementedError

    def event_destroy(self, event: Any) -> None:
        """Destroy one event from ``event_create`` before ``close``."""
        raise NotImplementedError

    def event_record(self, event: Any, stream: Any) -> None:
        raise NotImplementedError

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        """GPU time between two recorded events, waiting for ``end`` first."""
        raise NotImplementedError

    def device_free(self, device_ptr: int) -> None:
        """Free one buffer from ``device_alloc`` before ``close`` (a buffer that is grown)."""
        raise NotImplementedError

    def pinned_free(self, host: np.ndarray) -> None:
        """Free one array from ``pinned_empty`` before ``close``."""
        raise NotImplementedError

    def compile_kernel(self, source: str, name: str, where: str) -> Any:
        """Compile CUDA C ``source`` for this device's compute capability and return its ``extern "C"`` kernel
        ``name``; a failure raises JetsonDetectError naming ``where`` (the source file)."""
        raise NotImplementedError

    def launch_kernel(self, kernel: Any, grid: Tuple[int, int, int], block: Tuple[int, int, int],
                      args: Sequence[np.generic], stream: Any) -> None:
        """Enqueue ``kernel`` on ``stream``; ``args`` in the kernel's order, each a NumPy scalar of the C type."""
        raise NotImplementedError

    def close(self) -> None:
        """Free every buffer, stream, event and module this object still holds and release the device context;
        a second call does nothing."""
        raise NotImplementedError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PycudaMemory(CudaMemory):
    """pycuda (≤ 2022.1 on the Nano's Python 3.6): the device's primary context, pushed and popped per use."""

    api = "pycuda"

    def __init__(self, device_index: int = 0) -> None:
        self._cuda: Any = importlib.import_module("pycuda.driver")
        self._cuda.init()
        if device_index >= self._cuda.Device.count():
            raise JetsonDetectError("CUDA device {} does not exist (pycuda sees {}): check the GPU driver with "
                                    "nvidia-smi or tegrastats".format(device_index, self._cuda.Device.count()))
        self._device = self._cuda.Device(device_index)
        self._context = self._device.retain_primary_context()
        self._device_buffers: List[Any] = []
        self._host_buffers: List[Any] = []  # pycuda arrays: .base is the pinned allocation
        self._streams: List[Any] = []
        self._events: List[Any] = []
        self._modules: List[Any] = []
        self._closed = False

    def device_name(self) -> str:
        return str(self._device.name())

    def compute_capability(self) -> Tuple[int, int]:
        major, minor = self._device.compute_capability()
        return int(major), int(minor)

    @contextmanager
    def activate(self) -> Iterator[None]:
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def pinned_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        array = self._cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))
        self._host_buffers.append(array)
        return array

    def device_alloc(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        self._device_buffers.append(allocation)
        return int(allocation)

    def stream_create(self) -> Any:
        stream = self._cuda.Stream()
        self._streams.append(stream)
        return stream

    def stream_destroy(self, stream: Any) -> None:
        # pycuda destroys a stream when its last reference goes; this one is the last but the caller's
        self._streams.remove(stream)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def copy_htod_async(self, device_ptr: int, host: np.ndarray, stream: Any) -> None:
        self._cuda.memcpy_htod_async(device_ptr, host, stream)

    def copy_dtoh_async(self, host: np.ndarray, device_ptr: int, stream: Any) -> None:
        self._cuda.memcpy_dtoh_async(host, device_ptr, stream)

    def copy_htod(self, device_ptr: int, host: np.ndarray) -> None:
        self._cuda.memcpy_htod(device_ptr, np.ascontiguousarray(host))

    def event_create(self) -> Any:
        event = self._cuda.Event()
        self._events.append(event)
        return event

    def event_destroy(self, event: Any) -> None:
        self._events.remove(event)

    def event_record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(end.time_since(start))

    def device_free(self, device_ptr: int) -> None:
        allocation = [a for a in self._device_buffers if int(a) == device_ptr][0]
        self._device_buffers.remove(allocation)
        allocation.free()

    def pinned_free(self, host: np.ndarray) -> None:
        array = self._host_buffers.pop([id(a) for a in self._host_buffers].index(id(host)))
        array.base.free()

    def compile_kernel(self, source: str, name: str, where: str) -> Any:
        arch = arch_name(self.compute_capability())
        try:
            compiler = importlib.import_module("pycuda.compiler")
            # nvcc (CUDA 10.2 on the Nano) compiles once; pycuda caches the cubin in ~/.cache/pycuda
            module = compiler.SourceModule(source, arch=arch, no_extern_c=True)
            kernel = module.get_function(name)
        except Exception as exc:  # nvcc missing from PATH, a compile error, an unknown arch: all mean "not here"
            raise JetsonDetectError("{}: nvcc could not compile it for {} via pycuda ({}): put /usr/local/cuda/bin "
                                    "on PATH".format(where, arch, _first_line(exc))) from None
        self._modules.append(module)  # a module must outlive its kernels
        return kernel

    def launch_kernel(self, kernel: Any, grid: Tuple[int, int, int], block: Tuple[int, int, int],
                      args: Sequence[np.generic], stream: Any) -> None:
        kernel(*args, grid=tuple(grid), block=tuple(block), stream=stream)

    def close(self) -> None:
        if self._closed:
            return
        with self.activate():
            for allocation in self._device_buffers:
                allocation.free()
            for array in self._host_buffers:
                array.base.free()
            # streams, events and modules are freed as their last references go, with the context current
            self._streams, self._events, self._modules = [], [], []
        self._device_buffers = []
        self._host_buffers = []
        self._context.detach()  # the retain_primary_context() of __init__
        self._closed = True


def _import_cuda_python(name: str, old_name: str) -> Any:
    """A cuda-python module: ``cuda.bindings.NAME`` (12.6+/13.x) or its older name ``cuda.OLD_NAME``."""
    try:
        return importlib.import_module("cuda.bindings." + name)
    except ImportError:
        return importlib.import_module("cuda." + old_name)


def _import_cudart() -> Any:
    """cuda-python's runtime module."""
    return _import_cuda_python("runtime", "cudart")


class CudaPythonMemory(CudaMemory):
    """cuda-python's runtime API (x86): ``cudaSetDevice`` makes the primary context current on each thread."""

    api = "cuda-python"

    def __init__(self, device_index: int = 0) -> None:
        self._rt: Any = _import_cudart()
        count = self._check("cudaGetDeviceCount", self._rt.cudaGetDeviceCount())
        if device_index >= count:
            raise JetsonDetectError("CUDA device {} does not exist (cuda-python sees {}): check the GPU driver with "
                                    "nvidia-smi".format(device_index, count))
        self._index = device_index
        self._properties = self._check("cudaGetDeviceProperties", self._rt.cudaGetDeviceProperties(device_index))
        self._device_ptrs: List[int] = []
        self._host_ptrs: List[int] = []
        self._streams: List[Any] = []
        self._events: List[Any] = []
        self._driver: Any = None
        self._modules: List[Any] = []

    def _check(self, call: str, result: Any) -> Any:
        """Unpack a cuda-python ``(error, value...)`` tuple, raising on any error."""
        err = result[0]
        if int(err) != int(self._rt.cudaError_t.cudaSuccess):
            name = getattr(err, "name", str(err))
            raise JetsonDetectError("CUDA {} failed with {}: check the GPU with nvidia-smi (driver, free "
                                    "memory)".format(call, name))
        values = result[1:]
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def device_name(self) -> str:
        name = self._properties.name
        if isinstance(name, bytes):
            name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
        return str(name)

    def compute_capability(self) -> Tuple[int, int]:
        return int(self._properties.major), int(self._properties.minor)

    @contextmanager
    def activate(self) -> Iterator[None]:
        self._check("cudaSetDevice", self._rt.cudaSetDevice(self._index))
        yield

    def pinned_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if len(shape) else 1
        nbytes = max(count * dt.itemsize, 1)
        ptr = int(self._check("cudaMallocHost", self._rt.cudaMallocHost(nbytes)))
        self._host_ptrs.append(ptr)
        raw = (ctypes.c_uint8 * nbytes).from_address(ptr)
        return np.frombuffer(raw, dtype=np.uint8)[:count * dt.itemsize].view(dt).reshape(tuple(shape))

    def device_alloc(self, nbytes: int) -> int:
        ptr = int(self._check("cudaMalloc", self._rt.cudaMalloc(max(int(nbytes), 1))))
        self._device_ptrs.append(ptr)
        return ptr

    def stream_create(self) -> Any:
        stream = self._check("cudaStreamCreate", self._rt.cudaStreamCreate())
        self._streams.append(stream)
        return stream

    def stream_destroy(self, stream: Any) -> None:
        self._streams.remove(stream)
        self._check("cudaStreamDestroy", self._rt.cudaStreamDestroy(stream))

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_synchronize(self, stream: Any) -> None:
        self._check("cudaStreamSynchronize", self._rt.cudaStreamSynchronize(stream))

    def copy_htod_async(self, device_ptr: int, host: np.ndarray, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check("cudaMemcpyAsync", self._rt.cudaMemcpyAsync(device_ptr, host.ctypes.data, host.nbytes, kind,
                                                                stream))

    def copy_dtoh_async(self, host: np.ndarray, device_ptr: int, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check("cudaMemcpyAsync", self._rt.cudaMemcpyAsync(host.ctypes.data, device_ptr, host.nbytes, kind,
                                                                stream))

    def copy_htod(self, device_ptr: int, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check("cudaMemcpy", self._rt.cudaMemcpy(device_ptr, host.ctypes.data, host.nbytes, kind))

    def event_create(self) -> Any:
        event = self._check("cudaEventCreate", self._rt.cudaEventCreate())
        self._events.append(event)
        return event

    def event_destroy(self, event: Any) -> None:
        self._events.remove(event)
        self._check("cudaEventDestroy", self._rt.cudaEventDestroy(event))

    def event_record(self, event: Any, stream: Any) -> None:
        self._check("cudaEventRecord", self._rt.cudaEventRecord(event, stream))

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        self._check("cudaEventSynchronize", self._rt.cudaEventSynchronize(end))
        return float(self._check("cudaEventElapsedTime", self._rt.cudaEventElapsedTime(start, end)))

    def device_free(self, device_ptr: int) -> None:
        self._device_ptrs.remove(device_ptr)
        self._check("cudaFree", self._rt.cudaFree(device_ptr))

    def pinned_free(self, host: np.ndarray) -> None:
        ptr = int(host.ctypes.data)
        self._host_ptrs.remove(ptr)
        self._check("cudaFreeHost", self._rt.cudaFreeHost(ptr))

    def compile_kernel(self, source: str, name: str, where: str) -> Any:
        arch = arch_name(self.compute_capability())
        try:
            nvrtc = _import_cuda_python("nvrtc", "nvrtc")
            self._driver = _import_cuda_python("driver", "cuda")
        except ImportError as exc:
            raise JetsonDetectError("{}: cannot compile it: cuda-python has no NVRTC here ({}): pip install "
                                    "cuda-python".format(where, exc)) from None
        cubin = self._nvrtc_cubin(nvrtc, source, where, arch)
        driver = self._driver
        image = np.frombuffer(cubin, dtype=np.uint8)
        module = self._check_driver("cuModuleLoadData", where, driver.cuModuleLoadData(image.ctypes.data))
        self._modules.append(module)  # a module must outlive its kernels
        return self._check_driver("cuModuleGetFunction", where, driver.cuModuleGetFunction(module, name.encode()))

    def _nvrtc_cubin(self, nvrtc: Any, source: str, where: str, arch: str) -> bytes:
        """NVRTC's cubin for ``arch``, or JetsonDetectError with the first line of the compiler's log."""
        success = int(nvrtc.nvrtcResult.NVRTC_SUCCESS)

        def check(call: str, result: Any) -> Any:
            if int(result[0]) != success:
                raise JetsonDetectError("{}: NVRTC {} failed with {} for {}".format(
                    where, call, getattr(result[0], "name", result[0]), arch))
            return result[1] if len(result) > 1 else None

        program = check("nvrtcCreateProgram", nvrtc.nvrtcCreateProgram(source.encode(), where.encode(), 0, [], []))
        try:
            options = [("--gpu-architecture=" + arch).encode()]
            status = nvrtc.nvrtcCompileProgram(program, len(options), options)
            if int(status[0]) != success:
                log = b" " * int(check("nvrtcGetProgramLogSize", nvrtc.nvrtcGetProgramLogSize(program)))
                check("nvrtcGetProgramLog", nvrtc.nvrtcGetProgramLog(program, log))
                lines = [line for line in log.decode("utf-8", "replace").splitlines() if line.strip()]
                raise JetsonDetectError("{}: NVRTC could not compile it for {}: {}".format(
                    where, arch, lines[0] if lines else getattr(status[0], "name", status[0])))
            cubin = b" " * int(check("nvrtcGetCUBINSize", nvrtc.nvrtcGetCUBINSize(program)))
            check("nvrtcGetCUBIN", nvrtc.nvrtcGetCUBIN(program, cubin))
            return cubin
        finally:
            nvrtc.nvrtcDestroyProgram(program)

    def _check_driver(self, call: str, where: str, result: Any) -> Any:
        if int(result[0]) != int(self._driver.CUresult.CUDA_SUCCESS):
            raise JetsonDetectError("{}: CUDA {} failed with {}: check the GPU with nvidia-smi".format(
                where, call, getattr(result[0], "name", result[0])))
        return result[1] if len(result) > 1 else None

    def launch_kernel(self, kernel: Any, grid: Tuple[int, int, int], block: Tuple[int, int, int],
                      args: Sequence[np.generic], stream: Any) -> None:
        # cuLaunchKernel copies each argument from the address in kernelParams[i] before it returns
        values = [np.array(arg) for arg in args]
        params = (ctypes.c_void_p * len(values))(*[value.ctypes.data for value in values])
        driver = self._driver
        self._check_driver("cuLaunchKernel", "kernel launch", driver.cuLaunchKernel(
            kernel, grid[0], grid[1], grid[2], block[0], block[1], block[2], 0,
            driver.CUstream(self.stream_handle(stream)), ctypes.addressof(params), 0))

    def close(self) -> None:
        # The primary context stays: the runtime owns it (cudaDeviceReset would pull it from under other users).
        with self.activate():
            for stream in self._streams:
                self._check("cudaStreamDestroy", self._rt.cudaStreamDestroy(stream))
            for event in self._events:
                self._check("cudaEventDestroy", self._rt.cudaEventDestroy(event))
            for ptr in self._device_ptrs:
                self._check("cudaFree", self._rt.cudaFree(ptr))
            for ptr in self._host_ptrs:
                self._check("cudaFreeHost", self._rt.cudaFreeHost(ptr))
            for module in self._modules:
                self._check_driver("cuModuleUnload", "close", self._driver.cuModuleUnload(module))
        self._streams, self._events = [], []
        self._device_ptrs = []
        self._host_ptrs = []
        self._modules = []

    def held(self) -> Dict[str, int]:
        """How many buffers, streams, events and modules this object holds (the GPU release check reads it)."""
        return {"device buffers": len(self._device_ptrs), "pinned buffers": len(self._host_ptrs),
                "streams": len(self._streams), "events": len(self._events), "modules": len(self._modules)}


def _missing(api: str) -> str:
    if api == "pycuda":
        return "pycuda is not installed (Jetson: pip3 install 'pycuda<=2022.1' with /usr/local/cuda/bin on PATH)"
    return "cuda-python is not installed (x86: pip install cuda-python)"


def open_cuda_memory(api: str = "auto", device_index: int = 0) -> CudaMemory:
    """The CUDA memory implementation for ``api``: "auto" tries cuda-python, then pycuda (the Nano has only pycuda)."""
    if api not in CUDA_APIS:
        raise JetsonDetectError("--cuda-api {}: choose one of {}".format(api, ", ".join(CUDA_APIS)))
    order = ("cuda-python", "pycuda") if api == "auto" else (api,)
    reasons: List[str] = []
    for name in order:
        try:
            if name == "pycuda":
                return PycudaMemory(device_index)
            return CudaPythonMemory(device_index)
        except ImportError:
            reasons.append(_missing(name))
        except JetsonDetectError as exc:
            reasons.append(str(exc))
        except Exception as exc:  # the driver itself failed (no GPU, driver mismatch): report it, try the next
            reasons.append("{}: {}".format(name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    raise JetsonDetectError("no usable CUDA from Python: " + "; ".join(reasons))


def cuda_probe(api: str = "auto") -> Tuple[Optional[CudaMemory], str]:
    """(memory, "") when a CUDA device is usable, else (None, why not) — for backend selection."""
    try:
        return open_cuda_memory(api), ""
    except JetsonDetectError as exc:
        return None, str(exc)
