"""What the downstream scripts share: the pretrained encoder from a config, and the CLI error path."""

from __future__ import annotations

import sys
from typing import Any

import torch
from omegaconf import DictConfig

from mae.classifier import (CheckpointMismatchError, VideoClassifier, check_keys, encoder_arguments,
                            read_state_dict, read_tats_checkpoint)
from mae.model import VideoMAEEncoder
from mae.registry import create_model


def encoder_architecture(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """The encoder's arguments and, when ``cfg.checkpoint`` is set, the checkpoint's state dict.

    ``checkpoint_format=tats``: the architecture the checkpoint was trained with (its stored
    config); ``videomae`` or no checkpoint: ``model.name`` and ``model.img_size``. The clip
    length is ``data.num_frames`` in every case.
    """
    if cfg.checkpoint is None:
        return encoder_arguments(cfg.model.name, img_size=cfg.model.img_size, num_frames=cfg.data.num_frames), None
    if cfg.checkpoint_format == "tats":
        state, architecture = read_tats_checkpoint(cfg.checkpoint)
        given = _model_overrides()
        if given:
            print(f"note: {' '.join(given)} ignored: the encoder is the one {cfg.checkpoint} was trained with "
                  f"(checkpoint_format=tats reads its architecture from the checkpoint)", file=sys.stderr)
        if architecture["num_frames"] != cfg.data.num_frames:
            print(f"note: {cfg.checkpoint} was pretrained on {architecture['num_frames']}-frame clips; "
                  f"using data.num_frames={cfg.data.num_frames} (position table recomputed)", file=sys.stderr)
        return {**architecture, "num_frames": cfg.data.num_frames}, state
    state = read_state_dict(cfg.checkpoint)
    return encoder_arguments(cfg.model.name, img_size=cfg.model.img_size, num_frames=cfg.data.num_frames), state


def build_classifier(cfg: DictConfig, num_classes: int) -> VideoClassifier:
    """The fine-tuning model, its encoder from ``cfg.checkpoint`` (or random), ``train.drop_path`` and
    ``train.head_init_scale`` set."""
    architecture, state = encoder_architecture(cfg)
    model = VideoClassifier(num_classes=num_classes, drop_path_rate=cfg.train.drop_path,
                            head_init_scale=cfg.train.head_init_scale, **architecture)
    if state is None:
        return model
    if cfg.checkpoint_format == "videomae" and not any(key.startswith("encoder.") for key in state):
        model.load_finetuned_state(state, source=cfg.checkpoint)  # an official fine-tuned file
    else:
        model.load_encoder_state(state, source=cfg.checkpoint)
    return model


def build_frozen_encoder(cfg: DictConfig) -> VideoMAEEncoder:
    """The pretraining encoder with its final norm, from ``cfg.checkpoint`` (strict), frozen, in eval mode.

    Without a checkpoint: the encoder of a freshly initialised VideoMAE (the random-feature baseline).
    """
    architecture, state = encoder_architecture(cfg)
    if state is None:
        encoder = create_model(cfg.model.name, img_size=architecture["img_size"],
                               num_frames=architecture["num_frames"]).encoder
    else:
        if not any(k.startswith("encoder.") for k in state):
            raise CheckpointMismatchError(
                f"{cfg.checkpoint} has no 'encoder.*' keys: linear probing needs a pretraining checkpoint "
                "(a fine-tuned one has no pretrained final norm)")
        encoder = VideoMAEEncoder(**architecture, drop_path=0.0)
        encoder_state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        check_keys(encoder_state, encoder.state_dict(), source=str(cfg.checkpoint), target="VideoMAEEncoder")
        encoder.load_state_dict(encoder_state, strict=True)
    return encoder.requires_grad_(False).eval()


def _model_overrides() -> list[str]:
    """The ``model=...`` / ``model.*=...`` overrides of the command line (none outside a hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if o.split("=", 1)[0].lstrip("+~") in ("model",)
            or o.lstrip("+~").startswith("model.")]
