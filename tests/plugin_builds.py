"""Build the C++ plugin against NVIDIA's real TensorRT headers (../shared/third_party/tensorrt/<release>/include) with
g++, link it against the stub libnvinfer and stub CUDA launchers in tests/plugin_driver/, and build the driver.

CUDA's headers come from the PyPI wheels of the dev extra: ``nvidia-cuda-runtime-cu12`` (cuda_runtime_api.h) and
``nvidia-cuda-nvcc-cu12`` (crt/host_defines.h, which the runtime header includes). Nothing here needs CUDA itself:
the .cu files are never compiled by g++; tests/plugin_driver/stub_cuda.cpp stands in for their host entry points.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

from jetson_detect.plugin import PLUGIN_DIR

from conftest import SHARED

TENSORRT_SOURCES = SHARED / "third_party" / "tensorrt"
RELEASES = ("8.0.1", "8.2.1", "10.16.0", "11.1.0")
DRIVER_DIR = Path(__file__).resolve().parent / "plugin_driver"
PLUGIN_SOURCES = ("yolo_decode_nms_config.cpp", "yolo_decode_nms_tensors.cpp", "yolo_decode_nms_plugin.cpp",
                  "yolo_decode_nms_plugin_v3.cpp")
# Our code: every warning is an error (a deprecated TensorRT name included), and an `override` that matches no real
# virtual (or a virtual we implement without saying `override`) stops the build.
STRICT = ["-Werror", "-Wall", "-Wextra", "-Wsuggest-override", "-Woverloaded-virtual", "-Wdeprecated-declarations"]
# Sanitizers on one V2 and one V3 release: reading past a truncated engine blob is a heap overflow they report.
# (Not on 8.2.1 and 11.1, whose libraries' imports a test lists: the sanitizers add their own.)
SANITIZED = {"8.0.1", "10.16.0"}
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def cuda_include_dirs() -> List[str]:
    """The wheels' include folders holding cuda_runtime_api.h and crt/host_defines.h."""
    wanted = {"cuda_runtime": "cuda_runtime_api.h", "cuda_nvcc": os.path.join("crt", "host_defines.h")}
    found = {}
    for site in sys.path:
        for package, header in wanted.items():
            folder = os.path.join(site, "nvidia", package, "include")
            if package not in found and os.path.isfile(os.path.join(folder, header)):
                found[package] = folder
    missing = sorted(set(wanted) - set(found))
    assert not missing, ("CUDA headers of {} missing: pip install nvidia-cuda-runtime-cu12 nvidia-cuda-nvcc-cu12 "
                         "(setup.py's dev extra)".format(", ".join(missing)))
    return [found["cuda_runtime"], found["cuda_nvcc"]]


def std_flag(release: str) -> str:
    """C++14 for TensorRT 8.x (what JetPack 4.6's nvcc 10.2 takes), C++17 for 10/11."""
    return "-std=c++14" if release.startswith("8.") else "-std=c++17"


def include_flags(release: str) -> List[str]:
    """NVIDIA's and CUDA's headers as system headers (their own warnings are not ours), then ours."""
    flags = ["-isystem", str(TENSORRT_SOURCES / release / "include")]
    for folder in cuda_include_dirs():
        flags += ["-isystem", folder]
    return flags + ["-I", str(PLUGIN_DIR), "-I", str(DRIVER_DIR)]


class ReleaseBuild(NamedTuple):
    """What build_release made for one TensorRT release."""

    release: str
    plugin: Path
    driver: Path
    folder: Path


# ASCII quotes in g++'s messages, whatever the locale, so that tests can match them.
GXX_ENV = dict(os.environ, LC_ALL="C")


def run_gxx(args: List[str]) -> None:
    proc = subprocess.run(["g++"] + args, capture_output=True, text=True, env=GXX_ENV)
    assert proc.returncode == 0, "g++ {}\n{}".format(" ".join(args), proc.stderr)


def build_stub_nvinfer(release: str, folder: Path, common: Optional[List[str]] = None) -> Path:
    """folder/libnvinfer.so: the stub libnvinfer for `release`."""
    common = common if common is not None else [std_flag(release)] + include_flags(release)
    # The stub must implement 10.x's deprecated IPluginRegistry virtuals too; only our plugin must be clean.
    stub_extra = ["-Wno-deprecated-declarations"] if release.startswith("10.") else []
    library = folder / "libnvinfer.so"
    run_gxx(common + STRICT + stub_extra + ["-fPIC", "-shared", str(DRIVER_DIR / "stub_nvinfer.cpp"),
                                            "-o", str(library)])
    return library


def build_release(release: str, folder: Path) -> ReleaseBuild:
    """Stub libnvinfer + stub CUDA library, the plugin library linked against them (no undefined symbol left),
    and the driver."""
    folder.mkdir(parents=True, exist_ok=True)
    common = [std_flag(release)] + include_flags(release) + (SANITIZE if release in SANITIZED else [])
    build_stub_nvinfer(release, folder, common)
    run_gxx(common + STRICT + ["-fPIC", "-shared", str(DRIVER_DIR / "stub_cuda.cpp"),
                               "-o", str(folder / "libydn_stub_cuda.so")])
    plugin = folder / "libyolo_decode_nms.so"
    run_gxx(common + STRICT + ["-fPIC", "-shared"] + [str(PLUGIN_DIR / s) for s in PLUGIN_SOURCES]
            + ["-Wl,--no-undefined", "-L", str(folder), "-lnvinfer", "-lydn_stub_cuda", "-o", str(plugin)])
    driver = folder / "driver"
    run_gxx(common + STRICT + ["-rdynamic", str(DRIVER_DIR / "driver.cpp"), "-L", str(folder), "-lnvinfer",
                               "-lydn_stub_cuda", "-ldl", "-Wl,-rpath," + str(folder), "-o", str(driver)])
    return ReleaseBuild(release, plugin, driver, folder)


def syntax_check(release: str, source: Path, include_first: Path) -> "subprocess.CompletedProcess[str]":
    """Compile `source` for `release` with our strict flags, `include_first` searched before the plugin folder."""
    args = ["g++", std_flag(release), "-fsyntax-only"] + STRICT + ["-I", str(include_first)]
    args += include_flags(release) + [str(source)]
    return subprocess.run(args, capture_output=True, text=True, env=GXX_ENV)


def undefined_symbols(library: Path) -> Dict[str, str]:
    """The library's undefined dynamic symbols without a version (those of libc/libstdc++ carry one) -> nm type."""
    proc = subprocess.run(["nm", "-D", "--undefined-only", str(library)], capture_output=True, text=True,
                          check=True)
    symbols = {}
    for line in proc.stdout.splitlines():
        kind, name = line.split()[-2:]
        if "@" not in name and kind == "U":
            symbols[name] = kind
    return symbols
