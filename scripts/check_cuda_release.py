"""Open and close the TensorRT detector's CUDA side many times on a real GPU; nothing may stay allocated.

    python scripts/check_cuda_release.py --cycles 200 --json release.json

TensorRT is not installable on the GPU machines, so the engine is a double with TensorRT 10's tensor API whose
``execute_async_v3`` enqueues real device-to-device copies of fixed outputs on the stream it is given. Everything
else is the product's: cuda-python CUDA memory, ``TrtRunner`` with two slots (execution contexts, streams,
events, pinned and device buffers), ``TensorRTDetector`` with the GPU pre-processing kernel compiled by NVRTC and
its raw-frame buffers, two frames through ``submit``/``collect``, then ``close()``. After a warm-up cycle (CUDA
and NVRTC load their libraries once), the figures taken before the cycles must equal those after: free device
memory (``cudaMemGetInfo``), the CUDA memory object's own counts of buffers, streams, events and modules, and the
process's open file descriptors and threads. A control run of a few cycles *without* ``close()`` shows the check
sees a leak. Exit code 0 when nothing was retained.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # the engine double, shared with the GPU tests

from copy_engine import TRT, CopyEngine, cuda_runtime  # noqa: E402

from jetson_detect.backends.cuda_memory import open_cuda_memory  # noqa: E402
from jetson_detect.backends.tensorrt_backend import TensorRTDetector, TrtRunner  # noqa: E402
from jetson_detect.model.blocks import BuildOptions  # noqa: E402
from jetson_detect.model.spec import ModelSpec  # noqa: E402

SIZE = 320
K = 5
TENSORS = [("images", "in", (1, 3, SIZE, SIZE), np.float32), ("num_detections", "out", (1, 1), np.int32),
           ("boxes", "out", (1, K, 4), np.float32), ("scores", "out", (1, K), np.float32),
           ("classes", "out", (1, K), np.int32)]
OUTPUTS = {"num_detections": np.array([[2]], np.int32),
           "boxes": np.tile(np.array([10, 20, 30, 40], np.float32), (1, K, 1)),
           "scores": np.linspace(0.9, 0.5, K, dtype=np.float32).reshape(1, K),
           "classes": np.arange(K, dtype=np.int32).reshape(1, K)}


def Engine():
    """The copy-engine double (tests/copy_engine.py) with this check's tensors, uploaded with cuda-python."""
    rt = cuda_runtime()

    def upload(value):
        err, ptr = rt.cudaMalloc(value.nbytes)
        assert int(err) == 0
        err, = rt.cudaMemcpy(ptr, value.ctypes.data, value.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice)
        assert int(err) == 0
        return ptr
    return CopyEngine(TENSORS, OUTPUTS, upload)


def free_device_bytes() -> int:
    rt = cuda_runtime()
    rt.cudaDeviceSynchronize()
    err, free, _ = rt.cudaMemGetInfo()
    assert int(err) == 0
    return int(free)


def process_handles() -> dict:
    with open("/proc/self/status") as handle:
        status = dict(line.split(":", 1) for line in handle if ":" in line)
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": int(status["Threads"].strip()),
            "rss_mib": round(int(status["VmRSS"].split()[0]) / 1024.0, 1)}


def cycle(engine, frames, api, close=True):
    """One open → two frames → close of the detector's CUDA side; returns what the CUDA memory still holds."""
    cuda = open_cuda_memory(api)
    runner = TrtRunner(engine, cuda, TRT, streams=2)
    spec = ModelSpec((), K, (((10.0, 13.0),),), (8.0,), 0.0, 0.0, tuple("c{}".format(i) for i in range(K)))
    detector = TensorRTDetector(runner, spec, BuildOptions(input_h=SIZE, input_w=SIZE, batch=1), log=lambda m: None)
    assert detector.gpu_preprocess, "the pre-processing kernel did not compile"
    first = detector.submit(frames[0])
    second = detector.submit(frames[1])
    got = [detector.collect(first), detector.collect(second)]
    assert [len(d) for d in got] == [2, 2]
    if close:
        detector.close()
    return cuda.held(), detector


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--control-cycles", type=int, default=3)
    parser.add_argument("--cuda-api", default="cuda-python")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    engine = Engine()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), rng.integers(0, 255, (720, 1280, 3),
                                                                                  dtype=np.uint8)]
    cycle(engine, frames, args.cuda_api)  # warm-up: CUDA, NVRTC and the kernel cache load once
    before = {"free_device_bytes": free_device_bytes(), **process_handles()}
    start = time.monotonic()
    held_after_close = []
    for _ in range(args.cycles):
        held, _ = cycle(engine, frames, args.cuda_api)
        held_after_close.append(held)
    seconds = time.monotonic() - start
    after = {"free_device_bytes": free_device_bytes(), **process_handles()}
    leaked = [d for d in held_after_close if any(d.values())]
    kept = [cycle(engine, frames, args.cuda_api, close=False)[1] for _ in range(args.control_cycles)]
    control = {"free_device_bytes": free_device_bytes(), **process_handles()}
    for detector in kept:
        detector.close()
    result = {
        "cycles": args.cycles, "seconds": round(seconds, 1), "cuda_api": args.cuda_api,
        "before": before, "after": after,
        "device_bytes_retained": before["free_device_bytes"] - after["free_device_bytes"],
        "fds_retained": after["fds"] - before["fds"], "threads_retained": after["threads"] - before["threads"],
        "cycles_with_handles_held_after_close": len(leaked),
        "control_without_close": {"cycles": args.control_cycles,
                                  "device_bytes_retained": after["free_device_bytes"] - control["free_device_bytes"]},
    }
    ok = (result["device_bytes_retained"] == 0 and result["fds_retained"] == 0 and result["threads_retained"] == 0
          and not leaked and result["control_without_close"]["device_bytes_retained"] > 0)
    result["ok"] = ok
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
