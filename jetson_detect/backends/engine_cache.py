"""The engine cache: a metadata JSON next to each ``.engine`` and the decision to reuse it or rebuild.

A TensorRT engine is valid only for the TensorRT version and GPU model that built it (``../shared/TRT_COMPAT.md``
§4), and only for the weights, input size, batch, precision and decode/NMS settings baked into it. The metadata
records all of that plus the engine file's own sha256, so a stale, foreign or damaged engine is caught before
TensorRT ever sees it.
"""

import hashlib
import json
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..atomic_write import atomic_write_bytes
from ..errors import JetsonDetectError

METADATA_FORMAT = 1
METADATA_SUFFIX = ".json"

# Fields that must match for an engine to be reused, in the order a mismatch is reported, with their labels.
IDENTITY_FIELDS = (
    ("format", "metadata format"),
    ("tensorrt_version", "TensorRT version"),
    ("gpu_name", "GPU"),
    ("compute_capability", "GPU compute capability"),
    ("weights_sha256", "weights (sha256)"),
    ("precision", "precision"),
    ("input_size", "input size"),
    ("batch", "batch size"),
    ("nc", "class count"),
    ("names", "class names"),
    ("anchors", "anchors"),
    ("strides", "strides"),
    ("conf_thres", "confidence threshold"),
    ("iou_thres", "IoU threshold"),
    ("max_det", "max detections"),
    ("class_agnostic", "class-agnostic NMS"),
    ("plugin", "decode/NMS plugin"),
    ("builder_options", "builder options"),
)


class GpuInfo(NamedTuple):
    """What the engine is tied to besides TensorRT's version."""

    name: str
    compute_capability: Tuple[int, int]

    @property
    def cc_text(self) -> str:
        return "{}.{}".format(*self.compute_capability)


def metadata_path(engine_path: str) -> str:
    """``model.engine`` → ``model.engine.json``."""
    return engine_path + METADATA_SUFFIX


def sha256_file(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise JetsonDetectError("{}: cannot read ({})".format(path, exc.strerror or exc)) from None
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """The JSON form of a value (tuples → lists, numpy scalars → Python), so expected and stored compare equal."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def engine_identity(tensorrt_version: str, gpu: GpuInfo, precision: str, input_size: int, batch: int,
                    names: Sequence[str], anchors_px: Any, strides: Sequence[float], conf_thres: float,
                    iou_thres: float, max_det: int, class_agnostic: bool, weights_sha256: str,
                    plugin: str, builder_options: Dict[str, Any]) -> Dict[str, Any]:
    """Everything an engine depends on, as the JSON-ready dict stored in its metadata."""
    return _plain({
        "format": METADATA_FORMAT,
        "tensorrt_version": str(tensorrt_version),
        "gpu_name": gpu.name,
        "compute_capability": gpu.cc_text,
        "weights_sha256": weights_sha256,
        "precision": precision,
        "input_size": int(input_size),
        "batch": int(batch),
        "nc": len(names),
        "names": list(names),
        "anchors": anchors_px,
        "strides": list(strides),
        "conf_thres": float(conf_thres),
        "iou_thres": float(iou_thres),
        "max_det": int(max_det),
        "class_agnostic": bool(class_agnostic),
        "plugin": plugin,
        "builder_options": builder_options,
    })


def write_metadata(engine_path: str, identity: Dict[str, Any], extra: Optional[Dict[str, Any]] = None) -> str:
    """Write the metadata of a freshly written engine (identity + the engine's sha256 + ``extra``); returns its path."""
    record = dict(identity)
    record["engine_sha256"] = sha256_file(engine_path)
    record.update(_plain(extra or {}))
    path = metadata_path(engine_path)
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode("utf-8"),
                       "the engine metadata")
    return path


def _load_metadata(engine_path: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """(record, "") or (None, what is wrong with the metadata of ``engine_path``)."""
    path = metadata_path(engine_path)
    if not os.path.isfile(path):
        return None, "no metadata file {} next to it (an engine not built by jetson_detect, or copied without " \
                     "it)".format(os.path.basename(path))
    try:
        with open(path, "r", encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError) as exc:
        return None, "unreadable metadata {} ({})".format(os.path.basename(path), str(exc).splitlines()[0])
    if not isinstance(record, dict):
        return None, "metadata {} is not a JSON object".format(os.path.basename(path))
    for key in [k for k, _ in IDENTITY_FIELDS] + ["engine_sha256"]:
        if key not in record:
            return None, "metadata {} lacks '{}' (not jetson_detect engine metadata)".format(
                os.path.basename(path), key)
    return record, ""


def read_metadata(engine_path: str) -> Dict[str, Any]:
    """The metadata of ``engine_path``; a one-line error when it is missing, unreadable or not ours."""
    record, problem = _load_metadata(engine_path)
    if record is None:
        raise JetsonDetectError("{}: {}: rebuild it with 'python -m jetson_detect build'".format(engine_path, problem))
    return record


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "…"  # a sha256
    return text if len(text) <= 40 else text[:37] + "..."


def identity_mismatch(stored: Dict[str, Any], expected: Dict[str, Any]) -> Optional[str]:
    """The first identity field that differs, as "GPU differs (engine: X, now: Y)"; None when all match."""
    for key, label in IDENTITY_FIELDS:
        if stored.get(key) != expected.get(key):
            return "{} differs (engine: {}, now: {})".format(label, _short(stored.get(key)), _short(expected.get(key)))
    return None


class CacheDecision(NamedTuple):
    """Reuse the engine at ``engine_path``, or rebuild it for ``reason`` (one line)."""

    reuse: bool
    reason: str


def decide(engine_path: str, expected: Dict[str, Any]) -> CacheDecision:
    """Whether the engine at ``engine_path`` can serve ``expected``; never raises for a bad cache entry."""
    if not os.path.isfile(engine_path):
        return CacheDecision(False, "no engine at {} yet".format(engine_path))
    stored, problem = _load_metadata(engine_path)
    if stored is None:
        return CacheDecision(False, problem)
    if sha256_file(engine_path) != stored.get("engine_sha256"):
        return CacheDecision(False, "{} does not match its metadata (damaged or replaced)".format(engine_path))
    mismatch = identity_mismatch(stored, expected)
    if mismatch:
        return CacheDecision(False, mismatch)
    return CacheDecision(True, "")


def check_engine_file(engine_path: str, tensorrt_version: str, gpu: GpuInfo) -> Dict[str, Any]:
    """For an engine given directly (no weights): its metadata, after checking file, TensorRT version and GPU."""
    if not os.path.isfile(engine_path):
        raise JetsonDetectError("{}: no such engine file: build one with 'python -m jetson_detect build' or pass "
                                "--weights W.wts to build and cache it".format(engine_path))
    stored = read_metadata(engine_path)
    if sha256_file(engine_path) != stored["engine_sha256"]:
        raise JetsonDetectError("{}: the engine does not match its metadata (damaged or replaced): rebuild it with "
                                "'python -m jetson_detect build'".format(engine_path))
    here = {"tensorrt_version": str(tensorrt_version), "gpu_name": gpu.name, "compute_capability": gpu.cc_text}
    mismatches: List[str] = []
    for key, label in IDENTITY_FIELDS[1:4]:
        if stored[key] != here[key]:
            mismatches.append("{} differs (engine: {}, now: {})".format(label, stored[key], here[key]))
    if mismatches:
        raise JetsonDetectError("{}: {}: engines only run where they were built; rebuild it on this machine with "
                                "'python -m jetson_detect build'".format(engine_path, mismatches[0]))
    return stored
