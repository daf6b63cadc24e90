"""INT8 calibration math (jetson_detect.math.calibration) against values computed here independently.

The reference below is a plain per-cut loop over Python lists, the way NVIDIA's pytorch-quantization histogram
calibrator and the GTC 2017 talk describe the entropy method: P = the first i bins with the tail folded into the
last, Q = those bins merged into 128 groups and spread back over the non-empty bins, KL(P||Q) skipping empty P bins.
"""

import math

import numpy as np
import pytest

from jetson_detect.math import calibration as cal


def reference_entropy_cut(counts, num_quantized=128, start_bin=128):
    """The cut (number of kept bins) with the least KL, by the textbook loop."""
    counts = [float(c) for c in counts]
    best_cut, best_kl = None, math.inf
    for cut in range(start_bin, len(counts) + 1):
        p = counts[:cut]
        p[-1] += sum(counts[cut:])
        groups = {}
        for k in range(cut):
            groups.setdefault(k * num_quantized // cut, []).append(k)
        q = [0.0] * cut
        for members in groups.values():
            filled = [k for k in members if counts[k] > 0]
            for k in filled:
                q[k] = sum(counts[m] for m in members) / len(filled)
        p_sum, q_sum = sum(p), sum(q)
        kl = 0.0
        for pk, qk in zip(p, q):
            if pk > 0:
                if qk == 0:
                    kl = math.inf
                    break
                kl += (pk / p_sum) * math.log((pk / p_sum) / (qk / q_sum))
        if kl < best_kl:
            best_cut, best_kl = cut, kl
    return best_cut


def histogram_of(samples, num_bins=cal.NUM_BINS, batches=4):
    hist = cal.AbsHistogram(num_bins)
    for part in np.array_split(samples, batches):
        hist.add(part)
    return hist


@pytest.fixture(scope="module")
def gaussian():
    return histogram_of(np.random.default_rng(1).standard_normal(400000))


@pytest.fixture(scope="module")
def heavy_tailed():
    return histogram_of(np.random.default_rng(2).standard_t(2, 400000))


@pytest.mark.parametrize("name", ["gaussian", "heavy_tailed"])
def test_entropy_threshold_equals_the_textbook_loop(name, request):
    hist = request.getfixturevalue(name)
    expected_cut = reference_entropy_cut(hist.counts)
    assert cal.entropy_threshold(hist) == pytest.approx(expected_cut * hist.bin_width, rel=1e-12)


def test_heavy_tail_is_clipped_far_below_its_maximum_and_a_gaussian_is_not(gaussian, heavy_tailed):
    assert cal.entropy_threshold(heavy_tailed) < 0.2 * heavy_tailed.max_abs
    assert cal.entropy_threshold(gaussian) > 0.5 * gaussian.max_abs


def test_histogram_that_grew_equals_a_direct_histogram_at_its_final_width():
    samples = np.concatenate([np.full(10, 0.5), np.random.default_rng(3).uniform(-3, 3, 5000), [40.0, -90.0]])
    hist = cal.AbsHistogram(256)
    for part in (samples[:10], samples[10:2000], samples[2000:]):
        hist.add(part)
    direct = np.bincount(np.minimum((np.abs(samples) / hist.bin_width).astype(np.int64), 255), minlength=256)
    assert hist.counts.sum() == samples.size
    assert np.array_equal(hist.counts, direct)
    assert hist.max_abs == 90.0


def test_percentile_and_max_thresholds(gaussian):
    values = np.abs(np.random.default_rng(1).standard_normal(400000))
    expected = np.percentile(values, 99.9)
    assert abs(cal.percentile_threshold(gaussian, 99.9) - expected) <= gaussian.bin_width
    assert cal.max_threshold(gaussian) == pytest.approx(values.max())
    assert cal.threshold(gaussian, "max") == cal.max_threshold(gaussian)


def test_bad_calibration_data_and_methods_are_refused():
    with pytest.raises(ValueError, match="NaN or Inf"):
        cal.AbsHistogram().add(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="choose one of entropy, percentile, max"):
        cal.threshold(cal.AbsHistogram(), "minmax")
    with pytest.raises(ValueError, match="percentile"):
        cal.percentile_threshold(cal.AbsHistogram(), 0.0)


def test_all_zero_tensor_gets_a_harmless_scale():
    hist = cal.AbsHistogram()
    hist.add(np.zeros(100))
    assert cal.entropy_threshold(hist) == 0.0
    assert cal.activation_scale(0.0) == 1.0


def test_weight_scales_are_per_output_channel():
    weight = np.zeros((3, 2, 1, 1), np.float32)
    weight[0, 1] = -2.54
    weight[1, 0] = 1.27
    assert np.allclose(cal.weight_scales(weight), [0.02, 0.01, 1.0])


def test_quantize_dequantize_rounds_half_to_even_and_saturates():
    out = cal.quantize_dequantize(np.array([0.5, 1.5, 2.5, 1000.0, -1000.0]), [1.0])
    assert out.tolist() == [0.0, 2.0, 2.0, 127.0, -128.0]
