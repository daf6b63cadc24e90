"""``load_model``: a weights file (``.wts`` or ``.pt``) and the model spec that fits it, for every backend.

The spec comes from the model yaml when one is given, else from the ``.pt``'s own ``yaml``, else it is inferred
from the weights; either way it is checked against the weights before anything is built.
"""

from typing import Optional, Sequence, Tuple

from .spec import ModelSpec, load_model_yaml, resolve_spec
from .weights import Weights


def load_model(weights_path: str, cfg_path: Optional[str] = None,
               names: Optional[Sequence[str]] = None) -> Tuple[ModelSpec, Weights]:
    """Weights (``.wts`` or ``.pt``) and the spec that fits them (from ``cfg_path``, the checkpoint, or inferred)."""
    cfg = load_model_yaml(cfg_path) if cfg_path else None
    if weights_path.endswith(".pt"):
        from .checkpoint import read_checkpoint
        ckpt = read_checkpoint(weights_path)
        weights: Weights = ckpt.wts_weights()
        if names is None and ckpt.names:
            names = ckpt.names
        if cfg is None and ckpt.yaml:
            cfg = ckpt.yaml
            cfg_path = weights_path + " (model.yaml)"
    else:
        from .weights import read_wts
        weights = read_wts(weights_path)
    spec = resolve_spec(weights, cfg, cfg_where=cfg_path or "model yaml", names=names, weights_where=weights_path)
    return spec, weights
