"""CUDA resources are released: by ``close()``, on every failure path of creating the TensorRT detector, and by probes.

The fake CUDA memory counts every stream, event, device and pinned buffer it hands out; ``live_at_close`` is what
their owners had not freed when the CUDA memory itself was closed (it frees the rest, as the real ones do).
Plumbing tests; the real cuda-python run is scripts/check_cuda_release.py on a GPU (BENCHMARKS.md).
"""

import json
from pathlib import Path

import pytest

from jetson_detect.backends import engine_cache, tensorrt_backend
from jetson_detect.commands import doctor
from jetson_detect.errors import JetsonDetectError
from jetson_detect.model.blocks import BuildOptions

from conftest import PT
from trt_doubles import FakeCudaMemory, install, use_fake_cuda

SIZE = 96
SLOT_BUFFERS = 5  # one input and four plugin outputs per slot


def open_detector(monkeypatch, tmp_path, style="10.16.0", memory=None, **kwargs):
    fake = install(monkeypatch, style, memory)
    use_fake_cuda(monkeypatch, fake)
    det = tensorrt_backend.create_tensorrt_detector(str(PT), BuildOptions(input_h=SIZE, input_w=SIZE), precision="fp16",
                                                    engine_path=str(tmp_path / "m.engine"), log=lambda m: None,
                                                    **kwargs)
    return fake, det


def assert_all_released(memory):
    assert memory.closes == 1 and memory.live_at_close == {} and memory.live() == {}


@pytest.mark.parametrize("style", ["8.0.1", "8.2.1", "10.16.0", "11.1.0"])
@pytest.mark.parametrize("streams", [1, 2])
def test_close_frees_every_stream_event_and_buffer(monkeypatch, tmp_path, images, style, streams):
    fake, det = open_detector(monkeypatch, tmp_path, style, streams=streams)
    assert fake.memory.live() == {"device buffers": SLOT_BUFFERS * streams, "pinned buffers": SLOT_BUFFERS * streams,
                                  "streams": streams, "events": 2 * streams}
    det.detect_batch(images)  # the GPU pre-processing adds a raw-frame buffer pair per slot used
    det.submit(images[0])  # and a frame left in flight is waited for
    det.close()
    assert_all_released(fake.memory)


def test_a_failed_build_releases_everything(monkeypatch, tmp_path):
    fake = install(monkeypatch, "10.16.0")
    fake.fail_build = True
    use_fake_cuda(monkeypatch, fake)
    with pytest.raises(JetsonDetectError, match="could not build the engine"):
        tensorrt_backend.create_tensorrt_detector(str(PT), BuildOptions(input_h=SIZE, input_w=SIZE),
                                                  engine_path=str(tmp_path / "m.engine"), log=lambda m: None)
    assert_all_released(fake.memory)


def test_a_bad_engine_releases_everything(monkeypatch, tmp_path):
    fake, det = open_detector(monkeypatch, tmp_path)
    det.close()
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\x00garbage")
    meta_path = Path(engine_cache.metadata_path(str(engine)))
    meta = json.loads(meta_path.read_text())
    meta["engine_sha256"] = engine_cache.sha256_file(str(engine))
    meta_path.write_text(json.dumps(meta))
    memory = FakeCudaMemory()
    fake = install(monkeypatch, "10.16.0", memory)
    use_fake_cuda(monkeypatch, fake)
    with pytest.raises(JetsonDetectError, match="could not load this engine"):
        tensorrt_backend.create_tensorrt_detector(str(engine), log=lambda m: None)
    assert_all_released(memory)


@pytest.mark.parametrize("allocations", range(2 * SLOT_BUFFERS))
def test_out_of_memory_at_any_allocation_releases_everything(monkeypatch, tmp_path, allocations):
    memory = FakeCudaMemory()
    memory.fail_alloc_after = allocations  # then cudaMalloc fails: in slot 1 or 2, after some buffers exist
    with pytest.raises(JetsonDetectError, match="cudaErrorMemoryAllocation"):
        open_detector(monkeypatch, tmp_path, memory=memory)
    assert_all_released(memory)


def test_no_execution_context_for_the_second_stream_releases_the_first(monkeypatch, tmp_path):
    fake = install(monkeypatch, "10.16.0")
    use_fake_cuda(monkeypatch, fake)
    original = tensorrt_backend.TrtRunner._new_slot
    calls = []

    def second_fails(self, engine, cuda, trt, tensors):
        calls.append(1)
        fake.fail_context = len(calls) == 2
        return original(self, engine, cuda, trt, tensors)

    monkeypatch.setattr(tensorrt_backend.TrtRunner, "_new_slot", second_fails)
    with pytest.raises(JetsonDetectError, match="could not create an execution context"):
        tensorrt_backend.create_tensorrt_detector(str(PT), BuildOptions(input_h=SIZE, input_w=SIZE),
                                                  engine_path=str(tmp_path / "m.engine"), log=lambda m: None)
    assert len(calls) == 2
    assert_all_released(fake.memory)


def test_out_of_memory_in_the_gpu_preprocessing_then_close_releases_everything(monkeypatch, tmp_path, images):
    fake, det = open_detector(monkeypatch, tmp_path)
    fake.memory.fail_alloc_after = 0  # the raw-frame buffer of the first frame
    with pytest.raises(JetsonDetectError, match="cudaErrorMemoryAllocation"):
        det.detect(images[0])
    det.close()
    assert_all_released(fake.memory)


def test_tensorrt_available_keeps_nothing(monkeypatch):
    fake = install(monkeypatch, "10.16.0")
    monkeypatch.setattr(tensorrt_backend, "cuda_probe", lambda api="auto": (fake.memory, ""))
    assert tensorrt_backend.tensorrt_available()[0] is True
    assert_all_released(fake.memory)


def test_doctor_opens_no_cuda_memory(monkeypatch):
    from jetson_detect.backends import cuda_memory
    monkeypatch.setattr(cuda_memory, "open_cuda_memory", lambda *a, **k: pytest.fail("doctor opened CUDA memory"))
    monkeypatch.setattr(tensorrt_backend, "open_cuda_memory", lambda *a, **k: pytest.fail("doctor opened CUDA"))
    assert len(doctor.run_checks(None)) > 0
