"""Loading official VideoMAE pretraining checkpoints (strict key matching)."""

from __future__ import annotations

from pathlib import Path

import torch

from mae.classifier import check_keys, load_file
from mae.model import PretrainVideoMAE


def _read(path: Path) -> dict:
    return load_file(path, weights_only=True, hint="expected an official VideoMAE pretraining file or a "
                     "train_joint.py checkpoint")


def load_videomae_checkpoint(model: PretrainVideoMAE, path: str | Path) -> PretrainVideoMAE:
    """Load ``{"model": state_dict}``, ``{"module": ...}`` or a bare state dict, strictly.

    Keys are VideoMAE's (``encoder.blocks.0.attn.q_bias``, ``encoder_to_decoder.weight``,
    ``mask_token``, ``decoder.head.weight``, ...); a ``module.`` prefix from
    DistributedDataParallel is stripped. Any missing or unexpected key, or a shape
    mismatch, raises with the offending names. The position tables are not in the
    file: they are recomputed exactly as VideoMAE does (:mod:`mae.pos_embed`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VideoMAE checkpoint not found: {path}")
    return _load_strictly(model, _videomae_state(_read(path)), path)


def load_mae_weights(model: PretrainVideoMAE, path: str | Path) -> PretrainVideoMAE:
    """Initialise ``model`` from a ``train_joint.py`` checkpoint (its ``mae`` entry) or a VideoMAE file.

    Only the MAE's weights are read, strictly (missing, unexpected or mis-shaped keys raise);
    the rest of a train_joint checkpoint (optimiser, sampler, schedule) is ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MAE checkpoint not found: {path}")
    # not weights_only: a train_joint checkpoint also holds numpy RNG states
    from runtime.checkpoint import load  # names an empty, truncated or corrupt file as such

    checkpoint = load(path, map_location="cpu")
    if isinstance(checkpoint, dict) and {"mae", "agent", "config"} <= set(checkpoint):
        return _load_strictly(model, checkpoint["mae"], path)
    return _load_strictly(model, _videomae_state(checkpoint), path)


def _videomae_state(checkpoint: dict) -> dict:
    """The state dict inside an official file (``model``/``module``/``state_dict`` or bare), DDP prefix stripped."""
    state = checkpoint
    for key in ("model", "module", "state_dict"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            state = checkpoint[key]
            break
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_strictly(model: PretrainVideoMAE, state: dict, path: Path) -> PretrainVideoMAE:
    check_keys(state, model.state_dict(), source=str(path), target=model.__class__.__name__)
    model.load_state_dict(state, strict=True)
    return model
