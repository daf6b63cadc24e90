"""Weight transforms done once at build time: BatchNorm folded into the conv, parallel 1x1 convs merged."""

from typing import Optional, Sequence, Tuple

import numpy as np

YOLOV5_BN_EPS = 1e-3


def fold_batchnorm(weight: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                   eps: float = YOLOV5_BN_EPS, bias: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Fold y = γ·(conv(x)+b−μ)/√(σ²+ε) + β into one conv: w' = w·s, b' = β + (b−μ)·s with s = γ/√(σ²+ε).

    Done in float64 so the folded float32 weights are as close to the unfolded network as float32 allows.
    """
    out_ch = weight.shape[0]
    for name, arr in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)):
        if arr.shape != (out_ch,):
            raise ValueError("BatchNorm {} has shape {}, expected ({},) to match the conv".format(
                name, arr.shape, out_ch))
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    w = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    b0 = np.zeros(out_ch) if bias is None else bias.astype(np.float64)
    b = beta.astype(np.float64) + (b0 - mean.astype(np.float64)) * scale
    return w.astype(np.float32), b.astype(np.float32)


def merge_parallel_convs(convs: Sequence[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
    """Stack convs that read the same input with the same kernel into one conv (horizontal fusion).

    The merged conv's output channels are the inputs' outputs in order, so slicing recovers each branch.
    """
    shapes = {w.shape[1:] for w, _ in convs}
    if len(shapes) != 1:
        raise ValueError("only convs with the same input channels and kernel can be merged, got {}".format(shapes))
    weight = np.concatenate([w for w, _ in convs], axis=0)
    bias = np.concatenate([b for _, b in convs], axis=0)
    return np.ascontiguousarray(weight), np.ascontiguousarray(bias)
