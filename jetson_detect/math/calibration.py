"""INT8 calibration math: histograms of |x| and the threshold (the value that maps to 127) chosen from them.

``entropy_threshold`` is the method TensorRT's ``IInt8EntropyCalibrator2`` uses (Migacz, "8-bit Inference with
TensorRT", GTC 2017): a 2048-bin histogram of |x|; for every candidate cut ``i`` from 128 bins up, the first ``i``
bins with everything beyond folded into the last (P) are compared with the same bins quantized to 128 levels and
expanded back (Q); the cut with the least KL(P‖Q) wins, and the threshold is its upper edge. TensorRT's own code is
not public; where the talk leaves details open (group boundaries, the empty-bin rule, the edge) this follows
NVIDIA's open-source ``pytorch-quantization`` histogram calibrator. ``percentile_threshold`` and ``max_threshold``
are the simpler alternatives (``--calib-method``). Weights are quantized per output channel from their own maximum
(``weight_scales``), as TensorRT's explicit quantization expects.
"""

from typing import Optional, Sequence, Tuple

import numpy as np

NUM_BINS = 2048
NUM_QUANTIZED_BINS = 128  # the positive half of int8
INT8_MAX = 127.0
METHODS = ("entropy", "percentile", "max")
DEFAULT_PERCENTILE = 99.999


class AbsHistogram(object):
    """A histogram of |x| over [0, range) in ``num_bins`` equal bins that grows its range when a larger value
    arrives, by merging whole bins (so no count is ever split or guessed): one pass over the calibration set."""

    def __init__(self, num_bins: int = NUM_BINS) -> None:
        if num_bins < NUM_QUANTIZED_BINS:
            raise ValueError("a calibration histogram needs at least {} bins".format(NUM_QUANTIZED_BINS))
        self.num_bins = num_bins
        self.counts = np.zeros(num_bins, np.int64)
        self.bin_width = 0.0
        self.max_abs = 0.0

    def add(self, values: np.ndarray) -> None:
        """Count |values| (any shape); NaN/Inf are an error, since they would make every threshold meaningless."""
        magnitudes = np.abs(np.asarray(values, np.float64)).ravel()
        if magnitudes.size == 0:
            return
        top = float(magnitudes.max())
        if not np.isfinite(top):
            raise ValueError("calibration data holds NaN or Inf")
        self.max_abs = max(self.max_abs, top)
        if top >= self.bin_width * self.num_bins:
            self._grow(top)
        if self.bin_width == 0.0:  # all zeros so far
            self.counts[0] += magnitudes.size
            return
        index = np.minimum((magnitudes / self.bin_width).astype(np.int64), self.num_bins - 1)
        self.counts += np.bincount(index, minlength=self.num_bins)

    def _grow(self, top: float) -> None:
        if self.bin_width == 0.0:
            zeros = int(self.counts[0])
            # Some headroom, so a slightly larger value next batch does not force another merge at once.
            self.bin_width = top * 1.0001 / self.num_bins
            self.counts[:] = 0
            self.counts[0] = zeros
            return
        factor = int(np.ceil(top * 1.0001 / (self.bin_width * self.num_bins)))
        factor = max(factor, 2)
        merged = np.zeros(self.num_bins, np.int64)
        np.add.at(merged, np.arange(self.num_bins) // factor, self.counts)
        self.counts = merged
        self.bin_width *= factor


def kl_divergence_curve(counts: np.ndarray, num_quantized: int = NUM_QUANTIZED_BINS,
                        start_bin: int = NUM_QUANTIZED_BINS, chunk: int = 128) -> np.ndarray:
    """KL(P‖Q) for every cut ``i`` in [start_bin, len(counts)] (at index ``i - start_bin``); inf where undefined.

    P: the first ``i`` bins, the clipped tail added to the last one. Q: the same ``i`` bins merged into
    ``num_quantized`` groups (bin k in group ⌊k·num_quantized / i⌋) and spread back evenly over each group's
    non-empty bins. Q is empty only where the histogram is, so KL is finite unless the tail lands in an empty
    last bin; those cuts are skipped (inf). Computed for ``chunk`` cuts at a time as one 2-D array.
    """
    hist = np.asarray(counts, np.float64)
    n = hist.size
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = sum(hist[i:])
    bins = np.arange(n)
    cuts_all = np.arange(start_bin, n + 1)
    curve = np.full(cuts_all.size, np.inf)
    for first in range(0, cuts_all.size, chunk):
        cuts = cuts_all[first:first + chunk]
        rows = np.arange(cuts.size)[:, None]
        kept = bins[None, :] < cuts[:, None]
        sliced = np.where(kept, hist[None, :], 0.0)
        group = (bins[None, :] * num_quantized) // cuts[:, None] + rows * num_quantized
        group = np.where(kept, group, cuts.size * num_quantized)  # a spare slot for the bins past the cut
        slots = cuts.size * num_quantized + 1
        sums = np.bincount(group.ravel(), weights=sliced.ravel(), minlength=slots)
        filled = np.bincount(group.ravel(), weights=(sliced > 0).ravel(), minlength=slots)
        q = np.where(sliced > 0, sums[group] / np.maximum(filled[group], 1.0), 0.0)
        p = sliced.copy()
        p[np.arange(cuts.size), cuts - 1] += tail[cuts]
        p_total = p.sum(axis=1, keepdims=True)
        q_total = q.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = p / p_total
            q = q / q_total
            terms = np.where(p > 0, p * np.log(p / q), 0.0)
        kl = terms.sum(axis=1)
        kl[~np.isfinite(kl) | (p_total[:, 0] == 0)] = np.inf
        curve[first:first + cuts.size] = kl
    return curve


def entropy_threshold(histogram: AbsHistogram, num_quantized: int = NUM_QUANTIZED_BINS,
                      start_bin: int = NUM_QUANTIZED_BINS) -> float:
    """The |x| threshold with the least KL divergence between the clipped and the int8-quantized distribution."""
    if histogram.bin_width == 0.0:
        return 0.0
    curve = kl_divergence_curve(histogram.counts, num_quantized, start_bin)
    if not np.isfinite(curve).any():
        return histogram.max_abs
    cut = start_bin + int(np.argmin(curve))  # first minimum: ties keep the tighter range
    return _threshold_of_cut(cut, histogram.bin_width)


def _threshold_of_cut(cut: int, bin_width: float) -> float:
    """Keeping ``cut`` bins clips at their upper edge (NVIDIA's pytorch-quantization takes the same edge)."""
    return cut * bin_width


def percentile_threshold(histogram: AbsHistogram, percentile: float = DEFAULT_PERCENTILE) -> float:
    """The upper edge of the bin where the cumulative share of |x| reaches ``percentile`` percent."""
    if not 0.0 < percentile <= 100.0:
        raise ValueError("percentile must be in (0, 100], got {}".format(percentile))
    total = histogram.counts.sum()
    if total == 0 or histogram.bin_width == 0.0:
        return 0.0
    cumulative = np.cumsum(histogram.counts) / float(total)
    index = int(np.searchsorted(cumulative, percentile / 100.0 - 1e-12))
    return min((index + 1) * histogram.bin_width, histogram.max_abs)


def max_threshold(histogram: AbsHistogram) -> float:
    """The largest |x| seen: no clipping at all."""
    return histogram.max_abs


def threshold(histogram: AbsHistogram, method: str, percentile: float = DEFAULT_PERCENTILE) -> float:
    """The threshold by ``method`` (one of ``METHODS``)."""
    if method == "entropy":
        return entropy_threshold(histogram)
    if method == "percentile":
        return percentile_threshold(histogram, percentile)
    if method == "max":
        return max_threshold(histogram)
    raise ValueError("calibration method {!r}: choose one of {}".format(method, ", ".join(METHODS)))


def activation_scale(threshold_value: float) -> float:
    """Symmetric int8 scale for an activation: threshold ↦ 127; a tensor that was always zero gets scale 1."""
    return threshold_value / INT8_MAX if threshold_value > 0 else 1.0


def affine_uint8(minimum: float, threshold_value: float) -> Tuple[float, int]:
    """(scale, zero point) of uint8 covering [max(minimum, -threshold), threshold]: the CPU's asymmetric form of a
    symmetric threshold, so a tensor that is never far below zero (SiLU ≥ -0.28) keeps all 256 levels."""
    if threshold_value <= 0:
        return 1.0, 0
    low = min(0.0, max(minimum, -threshold_value))
    scale = (threshold_value - low) / 255.0
    return scale, int(np.clip(np.rint(-low / scale), 0, 255))


def weight_scales(weight: np.ndarray) -> np.ndarray:
    """Symmetric per-output-channel int8 scales of a conv weight (O, I, kh, kw): max |w| of each channel / 127."""
    w = np.asarray(weight, np.float64)
    flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    return np.where(flat > 0, flat / INT8_MAX, 1.0).astype(np.float32)


def quantize_dequantize(values: np.ndarray, scales: Sequence[float], axis: Optional[int] = None) -> np.ndarray:
    """x → clip(round(x / s), -128, 127) · s, the float result of a Q/DQ pair (rounding half to even, as ONNX)."""
    x = np.asarray(values, np.float32)
    s = np.asarray(scales, np.float32)
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        s = s.reshape(shape)
    return (np.clip(np.rint(x / s), -128, 127) * s).astype(np.float32)
