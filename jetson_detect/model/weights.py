"""Weights I/O: tensorrtx ``.wts`` text files (read and write) and YOLOv5 ``.pt`` checkpoints read safely.

A ``.wts`` file is a count line, then one line per tensor: ``name n hex hex ...`` with n big-endian float32 words
in hex. Shapes are not stored: the architecture spec gives them. ``.pt`` checkpoints are read by ``checkpoint``;
both readers refuse broken numbers through ``check_tensor_values``.
"""

import os
from collections import OrderedDict
from typing import Dict, List

import numpy as np

from ..atomic_write import atomic_output
from ..errors import JetsonDetectError

Weights = Dict[str, np.ndarray]  # name → flat float32 array, in file order


def _hex_words(path: str, line_no: int, name: str, words: List[str]) -> np.ndarray:
    """Parse big-endian float32 hex words, naming the tensor on any bad word."""
    try:
        raw = bytes.fromhex("".join(words))
    except ValueError:
        bad = next((w for w in words if len(w) != 8 or any(c not in "0123456789abcdefABCDEF" for c in w)), "?")
        raise JetsonDetectError("{}: line {}: tensor '{}' has a bad hex word '{}': the file is corrupt, "
                                "regenerate it with 'python -m jetson_detect convert'".format(
                                    path, line_no, name, bad[:16])) from None
    if any(len(w) != 8 for w in words):
        raise JetsonDetectError("{}: line {}: tensor '{}' has a hex word that is not 8 digits: the file is corrupt, "
                                "regenerate it with 'python -m jetson_detect convert'".format(path, line_no, name))
    return np.frombuffer(raw, dtype=">f4").astype(np.float32)


def check_tensor_values(name: str, values: np.ndarray, where: str) -> None:
    """Refuse a tensor that no healthy model holds: NaN or infinite values anywhere, or a negative BatchNorm
    variance (its square root would be NaN). Both weight readers call it, so every command gets the check."""
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise JetsonDetectError("{}: tensor '{}' holds NaN or infinite values ({} of {}): the weights are broken, "
                                "re-export them from a healthy checkpoint".format(where, name, bad, values.size))
    if name.endswith(".running_var") and np.any(values < 0):
        raise JetsonDetectError("{}: tensor '{}' holds a negative BatchNorm variance ({}): the weights are broken, "
                                "re-export them from a healthy checkpoint".format(where, name, float(values.min())))


def read_wts(path: str) -> Weights:
    """Read a tensorrtx ``.wts`` file strictly: count, lengths, hex, duplicates and finiteness are all checked."""
    if not os.path.isfile(path):
        raise JetsonDetectError("{}: no such weights file: pass a .wts or .pt file with --weights".format(path))
    weights: Dict[str, np.ndarray] = OrderedDict()
    with open(path, "r", encoding="ascii", errors="replace") as handle:
        first = handle.readline()
        try:
            count = int(first.strip())
        except ValueError:
            raise JetsonDetectError("{}: line 1 should be the tensor count, got '{}': this is not a .wts file".format(
                path, first.strip()[:40])) from None
        line_no = 1
        for line in handle:
            line_no += 1
            parts = line.split()
            if not parts:
                continue
            name = parts[0]
            if len(parts) < 2 or not parts[1].isdigit():
                raise JetsonDetectError("{}: line {}: tensor '{}' has no element count: the file is corrupt".format(
                    path, line_no, name))
            n = int(parts[1])
            words = parts[2:]
            if len(words) != n:
                raise JetsonDetectError(
                    "{}: line {}: tensor '{}' declares {} values but has {}: the file is truncated or corrupt, "
                    "regenerate it".format(path, line_no, name, n, len(words)))
            if name in weights:
                raise JetsonDetectError("{}: line {}: tensor '{}' appears twice: the file is corrupt".format(
                    path, line_no, name))
            values = _hex_words(path, line_no, name, words)
            check_tensor_values(name, values, "{}: line {}".format(path, line_no))
            weights[name] = values
    if len(weights) != count:
        raise JetsonDetectError("{}: header says {} tensors but the file holds {}: the file is truncated or "
                                "corrupt, regenerate it".format(path, count, len(weights)))
    return weights


def format_wts_line(name: str, values: np.ndarray) -> str:
    """One ``.wts`` line exactly as tensorrtx's gen_wts.py writes it (lower-case hex, single spaces)."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    hexed = flat.astype(">f4").tobytes().hex()
    words = [hexed[i:i + 8] for i in range(0, len(hexed), 8)]
    return "{} {} {}\n".format(name, flat.size, " ".join(words)) if words else "{} 0\n".format(name)


def write_wts(weights: Weights, path: str) -> None:
    """Write ``weights`` as a ``.wts`` file, atomically (a temporary file renamed into place)."""
    with atomic_output(path, "the .wts file", mode="w", encoding="ascii") as handle:
        handle.write("{}\n".format(len(weights)))
        for name, values in weights.items():
            handle.write(format_wts_line(name, values))

