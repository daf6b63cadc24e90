"""Compile the device-only kernel sources with NVRTC through ctypes (no nvcc, no GPU needed).

CI uses the PyPI wheels ``nvidia-cuda-nvrtc-cu12`` (libnvrtc) and ``nvidia-cuda-runtime-cu12`` (cuda_fp16.h);
a system CUDA toolkit works too.
"""

import ctypes
import ctypes.util
import glob
import os
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence

from jetson_detect.errors import JetsonDetectError

NVRTC_SUCCESS = 0
SYSTEM_CUDA_ROOTS = ("/usr/local/cuda", "/usr/local/cuda-10.2", "/usr")


class CompileResult(NamedTuple):
    """NVRTC's verdict on one source for one architecture."""

    arch: str
    ok: bool
    log: str
    cubin_bytes: int


def _site_dirs() -> List[str]:
    dirs = [p for p in sys.path if p and os.path.isdir(p)]
    return dirs


def find_nvrtc_library() -> Optional[str]:
    """Path of libnvrtc: the PyPI wheel's (nvidia/cuda_nvrtc/lib) first, then the system's."""
    for site in _site_dirs():
        found = sorted(glob.glob(os.path.join(site, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.*")))
        found = [f for f in found if ".alt." not in f and "builtins" not in f]
        if found:
            return found[-1]
    for root in SYSTEM_CUDA_ROOTS:
        found = sorted(glob.glob(os.path.join(root, "lib*", "libnvrtc.so*")))
        if found:
            return found[0]
    return ctypes.util.find_library("nvrtc")


def find_cuda_include_dir() -> Optional[str]:
    """A folder that holds cuda_fp16.h: the nvidia-cuda-runtime wheel's include folder, or the system CUDA's."""
    candidates = [os.path.join(site, "nvidia", "cuda_runtime", "include") for site in _site_dirs()]
    candidates += [os.path.join(root, "include") for root in SYSTEM_CUDA_ROOTS]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "cuda_fp16.h")):
            return folder
    return None


class Nvrtc:
    """A loaded libnvrtc."""

    def __init__(self, library_path: Optional[str] = None) -> None:
        path = library_path or find_nvrtc_library()
        if not path:
            raise JetsonDetectError(
                "libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12 (or install CUDA)")
        try:
            self._lib = ctypes.CDLL(path)
        except OSError as exc:
            raise JetsonDetectError("cannot load {}: {}".format(path, exc))
        self.path = path
        lib = self._lib
        lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_char_p,
                                           ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.nvrtcCompileProgram.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcGetProgramLogSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetProgramLog.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcGetCUBINSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.nvrtcVersion.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]

    def version(self) -> str:
        """NVRTC's version as "major.minor"."""
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        return "{}.{}".format(major.value, minor.value)

    def compile(self, source: str, name: str, arch: str, options: Sequence[str] = ()) -> CompileResult:
        """Compile ``source`` to a cubin for ``arch`` (e.g. "sm_53"); the log holds errors and warnings."""
        lib = self._lib
        prog = ctypes.c_void_p()
        status = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
        if status != NVRTC_SUCCESS:
            raise JetsonDetectError("nvrtcCreateProgram failed ({}) for {}".format(status, name))
        try:
            opts = ["--gpu-architecture={}".format(arch)] + list(options)
            argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
            status = lib.nvrtcCompileProgram(prog, len(opts), argv)
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log_buf = ctypes.create_string_buffer(size.value + 1)
            lib.nvrtcGetProgramLog(prog, log_buf)
            cubin = ctypes.c_size_t(0)
            if status == NVRTC_SUCCESS:
                lib.nvrtcGetCUBINSize(prog, ctypes.byref(cubin))
            return CompileResult(arch, status == NVRTC_SUCCESS and cubin.value > 0,
                                 log_buf.value.decode(errors="replace"), int(cubin.value))
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


def kernel_compile_options(include_dir: Optional[str]) -> List[str]:
    """The options every kernel source must compile with: C++14 (nvcc 10.2's newest) and no fast math."""
    options = ["--std=c++14"]
    if include_dir:
        options.append("-I{}".format(include_dir))
    return options


def compile_kernel_file(path: Path, arch: str, nvrtc: Optional[Nvrtc] = None) -> CompileResult:
    """Compile one device-only ``.cu`` file for ``arch`` with NVRTC."""
    compiler = nvrtc or Nvrtc()
    source = Path(path).read_text()
    return compiler.compile(source, Path(path).name, arch, kernel_compile_options(find_cuda_include_dir()))
