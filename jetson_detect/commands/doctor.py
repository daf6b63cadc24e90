"""``python -m jetson_detect doctor``: check the machine for everything the detector needs, one line per check.

Each line reads ``OK``, ``WARN`` or ``FAIL``, what was found, and for WARN/FAIL what to do. Exit code: 0 when no
check failed (warnings allowed: e.g. a PC without TensorRT runs the CPU backend), 1 when at least one check failed.
"""

import glob
import importlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

from ..backends.gpu_arch import INT8_MIN_COMPUTE_CAPABILITY, int8_supported, jetson_compute_capability

OK = "OK"
WARN = "WARN"
FAIL = "FAIL"

# NumPy 1.19.5's aarch64 wheel (pip's pick on Python 3.6) bundles an OpenBLAS whose CPU detection executes an
# instruction the Jetsons' CPUs refuse: "Illegal instruction" on import unless OpenBLAS is told the core type
# (numpy/numpy#18131). setup.py excludes 1.19.5; the unit and the installer set the variable as well.
BROKEN_NUMPY = "1.19.5"
OPENBLAS_FIX = "OPENBLAS_CORETYPE=ARMV8"
NUMPY_FIX = ("pip3 install --user 'numpy>=1.19,!=1.19.5' (1.19.4 on Python 3.6), or export {} (already set in "
             "the service unit)".format(OPENBLAS_FIX))


class Check(NamedTuple):
    """One result line."""

    level: str
    name: str
    found: str
    fix: str = ""

    def line(self) -> str:
        """``LEVEL name: found; fix: ...`` on one line."""
        text = "{:<4} {}: {}".format(self.level, self.name, self.found)
        return text + ("; fix: " + self.fix if self.fix and self.level != OK else "")


def is_jetson() -> bool:
    """True on an NVIDIA Jetson (L4T release file or device-tree model)."""
    if os.path.exists("/etc/nv_tegra_release"):
        return True
    return "jetson" in jetson_model().lower()


def jetson_model() -> str:
    """The device-tree model string ('' when there is none)."""
    try:
        with open("/proc/device-tree/model", "rb") as handle:
            return handle.read().decode("utf-8", "replace").strip("\0 \n")
    except OSError:
        return ""


def _version_of(module: Any) -> str:
    return str(getattr(module, "__version__", getattr(module, "VERSION", "unknown version")))


def _try_import(name: str) -> Tuple[Optional[Any], str]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken install raising something else on import
        return None, " ".join(str(exc).split())[:120]
    if getattr(module, "__file__", None) is None:
        # a bare namespace package, e.g. the folder that tensorrt-stubs installs: no library behind it
        return None, "only a namespace package (type stubs?) named {}".format(name)
    return module, ""


def check_python() -> Check:
    version = "{}.{}.{}".format(*sys.version_info[:3])
    if sys.version_info < (3, 6):
        return Check(FAIL, "Python", version + " is too old", "use Python 3.6 or newer (JetPack 4.6 ships 3.6)")
    return Check(OK, "Python", "{} ({})".format(version, sys.executable))


def numpy_version_without_import() -> Optional[str]:
    """The installed NumPy's version read from ``numpy/version.py``, without importing NumPy (an import can kill
    the process, see BROKEN_NUMPY); None when NumPy is not found."""
    try:
        spec = importlib.util.find_spec("numpy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "version.py"), encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None
    match = re.search(r"^(?:short_)?version\s*(?::\s*str)?\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return match.group(1) if match else None


def numpy_would_crash(machine: str, version: Optional[str], environ: Any) -> bool:
    """aarch64 + NumPy 1.19.5 + no OPENBLAS_CORETYPE: ``import numpy`` dies with "Illegal instruction" on Jetsons."""
    return machine == "aarch64" and version == BROKEN_NUMPY and not environ.get("OPENBLAS_CORETYPE")


def check_numpy() -> Check:
    version = numpy_version_without_import()
    if numpy_would_crash(platform.machine(), version, os.environ):
        # Set it for this process, so the checks that follow (TensorRT, OpenCV import NumPy) can still run.
        os.environ["OPENBLAS_CORETYPE"] = "ARMV8"
        return Check(FAIL, "NumPy", "{} on aarch64 without OPENBLAS_CORETYPE: 'import numpy' dies with "
                     "\"Illegal instruction\"".format(version), NUMPY_FIX)
    numpy, error = _try_import("numpy")
    if numpy is None:
        return Check(FAIL, "NumPy", "not importable ({})".format(error),
                     "sudo apt install python3-numpy (Jetson) or pip install numpy")
    return Check(OK, "NumPy", _version_of(numpy))


def check_opencv(jetson: bool) -> Check:
    cv2, error = _try_import("cv2")
    if cv2 is None:
        fix = ("use JetPack's OpenCV (sudo apt install nvidia-opencv python3-opencv)" if jetson
               else "pip install 'jetson_detect[cpu]' (opencv-python-headless)")
        return Check(FAIL, "OpenCV", "not importable ({})".format(error), fix)
    gstreamer = False
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            gstreamer = line.split(":", 1)[1].strip().upper().startswith("YES")
    found = "{} from {}, GStreamer {}".format(_version_of(cv2), os.path.dirname(cv2.__file__ or "?"),
                                             "yes" if gstreamer else "no")
    if gstreamer:
        return Check(OK, "OpenCV", found)
    if jetson:
        return Check(FAIL, "OpenCV", found, "CSI cameras need GStreamer: remove pip OpenCV and use JetPack's "
                     "(pip3 uninstall opencv-python opencv-python-headless)")
    return Check(WARN, "OpenCV", found, "csi:// and GStreamer RTSP need an OpenCV built with GStreamer; files, "
                 "/dev/videoN and FFmpeg RTSP work as is")


def pip_opencv_dists() -> List[str]:
    """pip-installed OpenCV distributions found on sys.path (name-version)."""
    found = []
    for entry in sys.path:
        for info in glob.glob(os.path.join(entry or ".", "opencv_*.dist-info")):
            found.append(os.path.basename(info)[:-len(".dist-info")])
    return sorted(set(found))


def check_opencv_shadowing(jetson: bool) -> Check:
    dists = pip_opencv_dists()
    if not jetson:
        return Check(OK, "pip OpenCV vs JetPack", "not a Jetson; pip OpenCV ({}) is the right one here".format(
            ", ".join(dists) or "none"))
    cv2, _ = _try_import("cv2")
    location = os.path.dirname(getattr(cv2, "__file__", "") or "") if cv2 is not None else ""
    if dists and "/usr/lib/python3" not in location:
        return Check(FAIL, "pip OpenCV vs JetPack", "{} shadows JetPack's OpenCV (cv2 loads from {})".format(
            ", ".join(dists), location or "?"), "pip3 uninstall " + " ".join(d.split("-")[0] for d in dists))
    if dists:
        return Check(WARN, "pip OpenCV vs JetPack", "{} installed but JetPack's cv2 wins ({})".format(
            ", ".join(dists), location), "pip3 uninstall " + " ".join(d.split("-")[0] for d in dists))
    return Check(OK, "pip OpenCV vs JetPack", "no pip OpenCV; cv2 from " + (location or "?"))


def check_tensorrt(jetson: bool) -> Check:
    trt, error = _try_import("tensorrt")
    if trt is None:
        if jetson:
            return Check(FAIL, "TensorRT", "not importable ({})".format(error),
                         "install JetPack 4.6.x (sudo apt install nvidia-tensorrt python3-libnvinfer)")
        return Check(WARN, "TensorRT", "not installed; the CPU backend (ONNX Runtime) will be used",
                     "on an NVIDIA GPU install TensorRT 10.x from NVIDIA's tar or deb package and set "
                     "TENSORRT_ROOT (pip's tensorrt wheels have no headers, and the plugin build needs them)")
    return Check(OK, "TensorRT", _version_of(trt))


def check_cuda_python(jetson: bool) -> Check:
    pycuda, _ = _try_import("pycuda")
    if pycuda is not None:
        return Check(OK, "CUDA for Python", "pycuda " + _version_of(pycuda))
    for name in ("cuda.bindings", "cuda"):
        module, _ = _try_import(name)
        if module is not None:
            return Check(OK, "CUDA for Python", "cuda-python ({})".format(name))
    trt, _ = _try_import("tensorrt")
    fix = ("pip3 install 'pycuda<=2022.1' (needs nvcc on PATH: export PATH=/usr/local/cuda/bin:$PATH)" if jetson
           else "pip install cuda-python")
    if trt is not None or jetson:
        return Check(FAIL, "CUDA for Python", "neither pycuda nor cuda-python is importable", fix)
    return Check(WARN, "CUDA for Python", "neither pycuda nor cuda-python (only needed with TensorRT)", fix)


def find_plugin_library() -> Optional[str]:
    """The decode+NMS plugin library where the loader looks for it (plugin.loader.candidate_paths)."""
    from ..plugin.loader import candidate_paths

    for path in candidate_paths():
        if path.is_file():
            return str(path)
    return None


def check_plugin(jetson: bool = False) -> Check:
    path = find_plugin_library()
    trt, _ = _try_import("tensorrt")
    if path is None:
        level = FAIL if trt is not None else WARN
        where = ("" if jetson else " with TENSORRT_ROOT=/path/to/TensorRT-10.x (the unpacked tar: pip's tensorrt "
                 "wheels have no headers)")
        return Check(level, "YoloDecodeNMS plugin", "libyolo_decode_nms.so not found",
                     "build it on this device with scripts/build_plugin.sh{} (or set JETSON_DETECT_PLUGIN=/path/to/"
                     "it)".format(where) + ("" if trt is not None else "; only needed with TensorRT"))
    if trt is None:
        return Check(OK, "YoloDecodeNMS plugin", path + " (not loaded: no TensorRT)")
    import ctypes

    try:
        ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
    except OSError as exc:
        return Check(FAIL, "YoloDecodeNMS plugin", "{} does not load ({})".format(path, exc),
                     "rebuild it against this TensorRT with scripts/build_plugin.sh")
    return Check(OK, "YoloDecodeNMS plugin", path + " loads")


def _run(argv: List[str], timeout_s: float = 10.0) -> Optional[str]:
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def gpu_info() -> Optional[Tuple[str, Tuple[int, int]]]:
    """(name, compute capability) of GPU 0 from pycuda, nvidia-smi or the Jetson model; None without a GPU."""
    try:
        import pycuda.driver as cuda  # type: ignore

        cuda.init()
        device = cuda.Device(0)
        return device.name(), tuple(device.compute_capability())  # type: ignore[return-value]
    except Exception:  # no pycuda, no driver or no device: try the next way
        pass
    if shutil.which("nvidia-smi"):
        out = _run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"])
        if out and out.strip():
            name, _, cc_text = out.strip().splitlines()[0].rpartition(",")
            try:
                major, minor = cc_text.strip().split(".")
                return name.strip(), (int(major), int(minor))
            except ValueError:
                return name.strip() or cc_text.strip(), (0, 0)
    model = jetson_model()
    capability = jetson_compute_capability(model)
    return None if capability is None else (model, capability)


def check_gpu(jetson: bool) -> Check:
    info = gpu_info()
    if info is None:
        return Check(FAIL if jetson else WARN, "GPU", "no CUDA GPU found",
                     "check the NVIDIA driver (nvidia-smi / JetPack)" if jetson
                     else "none needed for the CPU backend; an NVIDIA GPU enables TensorRT")
    name, capability = info
    cc = "{}.{}".format(*capability)
    if int8_supported(capability):
        return Check(OK, "GPU", "{}, compute capability {}: FP16 and INT8".format(name, cc))
    return Check(WARN, "GPU", "{}, compute capability {}: FP16 yes, INT8 no".format(name, cc),
                 "build engines with --precision fp16 (INT8 needs compute capability {}.{}+)".format(
                     *INT8_MIN_COMPUTE_CAPABILITY))


def check_cameras(jetson: bool) -> Check:
    devices = sorted(glob.glob("/dev/video*"))
    csi = False
    if shutil.which("gst-inspect-1.0"):
        csi = _run(["gst-inspect-1.0", "nvarguscamerasrc"]) is not None
    parts = []
    if devices:
        parts.append(", ".join(devices))
    if csi:
        parts.append("nvarguscamerasrc (CSI) available")
    if devices or csi:
        return Check(OK, "cameras", "; ".join(parts))
    return Check(WARN, "cameras", "no /dev/video* and no nvarguscamerasrc",
                 "connect a camera (CSI: check the ribbon, then sudo systemctl restart nvargus-daemon) or use "
                 "--source FILE|rtsp://...")


def check_display() -> Check:
    display = os.environ.get("DISPLAY")
    if display:
        return Check(OK, "DISPLAY", display + " (display://0 output works)")
    return Check(WARN, "DISPLAY", "not set (e.g. over SSH): display://0 output is skipped",
                 "view it in a browser instead: --output http://0.0.0.0:8080")


def check_jtop(jetson: bool) -> Check:
    jtop, error = _try_import("jtop")
    if jtop is None:
        fix = "sudo pip3 install 'jetson-stats<7' (jetson-stats 7 needs Python 3.7+), then reboot" if jetson \
            else "telemetry falls back to CPU/RAM from /proc; nothing to do off a Jetson"
        return Check(WARN, "jtop (jetson-stats)", "not installed" if "No module" in error else error, fix)
    if not os.path.exists("/run/jtop.sock"):
        return Check(WARN, "jtop (jetson-stats)", "installed but the jtop service is not running",
                     "sudo systemctl restart jtop.service")
    if not os.access("/run/jtop.sock", os.R_OK | os.W_OK):
        return Check(WARN, "jtop (jetson-stats)", "no permission on /run/jtop.sock",
                     "sudo usermod -aG jtop $USER, then log in again")
    return Check(OK, "jtop (jetson-stats)", "service running")


def _existing_parent(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_disk(events_dir: str, min_free_mb: float) -> Check:
    where = _existing_parent(events_dir)
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return Check(FAIL, "free disk", "cannot stat {} ({})".format(where, exc), "check alarms.events_dir")
    free_mb = usage.free / 1024.0 / 1024.0
    found = "{:.0f} MB free for events at {}".format(free_mb, events_dir)
    if free_mb < min_free_mb:
        return Check(FAIL, "free disk", found, "free space or lower alarms.storage.min_free_mb ({:.0f})".format(
            min_free_mb))
    if free_mb < max(1024.0, 4 * min_free_mb):
        return Check(WARN, "free disk", found, "snapshots and clips will rotate often; free some space")
    return Check(OK, "free disk", found)


def check_writable(name: str, folder: str) -> Check:
    where = _existing_parent(folder)
    if not os.path.isdir(where):
        return Check(FAIL, name, "{} is not a folder".format(where), "point it at a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".doctor-", dir=where)
        os.close(handle)
        os.remove(probe)
    except OSError as exc:
        return Check(FAIL, name, "{} is not writable ({})".format(where, exc.strerror or exc),
                     "sudo chown -R $USER {} (or choose another folder)".format(where))
    return Check(OK, name, "{} writable{}".format(folder, "" if where == os.path.abspath(folder) else
                                                   " (will be created)"))


def run_checks(config: Optional[dict]) -> List[Check]:
    """Every check in order; a check that crashes becomes a FAIL line instead of a traceback."""
    from ..app.config import default_config

    config = config or default_config()
    jetson = is_jetson()
    cache = config["model"]["engine_cache"] or os.path.dirname(os.path.abspath(config["model"]["weights"] or "x"))
    steps: List[Tuple[str, Callable[[], Check]]] = [
        ("Python", check_python), ("NumPy", check_numpy), ("OpenCV", lambda: check_opencv(jetson)),
        ("pip OpenCV vs JetPack", lambda: check_opencv_shadowing(jetson)),
        ("TensorRT", lambda: check_tensorrt(jetson)), ("CUDA for Python", lambda: check_cuda_python(jetson)),
        ("YoloDecodeNMS plugin", lambda: check_plugin(jetson)), ("GPU", lambda: check_gpu(jetson)),
        ("cameras", lambda: check_cameras(jetson)), ("DISPLAY", check_display), ("jtop", lambda: check_jtop(jetson)),
        ("free disk", lambda: check_disk(config["alarms"]["events_dir"], config["alarms"]["storage"]["min_free_mb"])),
        ("engine cache", lambda: check_writable("engine cache", cache)),
    ]
    results = []
    for name, step in steps:
        try:
            results.append(step())
        except Exception as exc:  # doctor must report, not crash
            results.append(Check(FAIL, name, "check crashed: {}: {}".format(type(exc).__name__, exc),
                                 "report this as a bug"))
    return results


def add_arguments(parser: Any) -> None:
    """Options of ``doctor``."""
    parser.add_argument("--config", default=None, metavar="YAML",
                        help="config whose events folder and engine cache are checked (default: built-in defaults)")


def main(args: Any) -> int:
    """Print one line per check; exit 0 without FAIL lines, 1 with at least one."""
    from ..app.config import load_config

    config = load_config(getattr(args, "config", None))
    print("jetson_detect doctor on {} ({}, {})".format(platform.node(), platform.machine(),
                                                      jetson_model() or "not a Jetson"))
    results = run_checks(config)
    for result in results:
        print(result.line())
    failed = sum(1 for r in results if r.level == FAIL)
    warned = sum(1 for r in results if r.level == WARN)
    print("{} failed, {} warning(s), {} ok; exit code {}".format(failed, warned, len(results) - failed - warned,
                                                                1 if failed else 0))
    return 1 if failed else 0
