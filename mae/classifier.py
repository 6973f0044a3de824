"""VideoMAE encoder + classification head, for action-recognition fine-tuning (paper Table 7).

The classifier is VideoMAE's fine-tuning model (``modeling_finetune.VisionTransformer`` with
``use_mean_pooling=True``): the pretrained encoder on *all* N tokens (no masking), its final
LayerNorm dropped, the mean over tokens, a fresh LayerNorm ``fc_norm``, and a Linear ``head``.
Stochastic depth (``drop_path_rate``) rises linearly over the blocks.

Key layout: the encoder keeps the pretraining model's names under ``encoder.``
(``encoder.patch_embed.proj.weight``, ``encoder.blocks.0.attn.q_bias``, ...), so the
``encoder.*`` keys of a ``train_joint.py`` checkpoint or of an official VideoMAE *pretraining*
checkpoint load by name; ``fc_norm.*`` and ``head.*`` are new. Official VideoMAE
*fine-tuned* checkpoints (keys ``patch_embed.*``, ``blocks.*``, ``fc_norm.*``, ``head.*``)
load too: their trunk keys gain the ``encoder.`` prefix. The pretraining encoder's final
``encoder.norm`` is not used (VideoMAE replaces it by ``fc_norm`` after pooling): it is the
one pretrained key skipped, by name. Every other key must match exactly; a missing or
unexpected key or a shape mismatch is an error listing them.

Layer-wise lr decay: :meth:`VideoClassifier.group_matcher` tells timm that the patch
embedding is layer 0, block i is layer i + 1 and ``fc_norm``/``head`` are the last layer
(depth + 1), so ``timm.optim.create_optimizer_v2(model, "adamw", layer_decay=0.75)`` gives
layer l the lr scale ``0.75 ** (depth + 1 - l)`` - VideoMAE's ``LayerDecayValueAssigner``.

Shapes:
    video ``(B, 3, T, H, W)`` ImageNet-normalised -> logits ``(B, num_classes)``.
"""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path
from typing import Any

import torch
from timm.layers import trunc_normal_
from torch import nn

from mae.model import PretrainVideoMAE, VideoMAEEncoder
from mae.registry import SIZES
from runtime.errors import CheckpointError, CheckpointMismatchError


# The pretraining encoder's final norm: replaced by fc_norm after pooling (VideoMAE does the same).
PRETRAIN_ONLY_KEYS = frozenset({"encoder.norm.weight", "encoder.norm.bias"})


# Encoder constructor arguments and the pretraining model's defaults for them.
_ENCODER_ARGS = ("img_size", "patch_size", "num_frames", "tubelet_size", "embed_dim", "depth", "num_heads",
                 "mlp_ratio", "pos_embed")
_PRETRAIN_DEFAULTS = {name: p.default for name, p in inspect.signature(PretrainVideoMAE).parameters.items()}


def encoder_arguments(size: str, **overrides: Any) -> dict[str, Any]:
    """The encoder's architecture for a model size (``micro|tiny|small|base|large``) plus overrides.

    ``None`` overrides are ignored (a config's "size default"). Unknown names raise.
    """
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    unknown = sorted(set(overrides) - set(_ENCODER_ARGS))
    if unknown:
        raise ValueError(f"unknown encoder argument(s) {unknown}; allowed: {list(_ENCODER_ARGS)}")
    merged = {**_PRETRAIN_DEFAULTS, **SIZES[size], **{k: v for k, v in overrides.items() if v is not None}}
    return {name: merged[name] for name in _ENCODER_ARGS}


class VideoClassifier(nn.Module):
    """VideoMAE fine-tuning model: encoder (all tokens) -> mean -> ``fc_norm`` -> ``head``.

    :param num_classes: outputs of the head.
    :param img_size, patch_size, num_frames, tubelet_size, embed_dim, depth, num_heads,
        mlp_ratio: the encoder's architecture (see :func:`encoder_arguments`).
    :param drop_path_rate: stochastic depth of the last block (linear from 0; Table 7: 0.1).
    :param head_drop_rate: dropout before the head (VideoMAE's ``fc_drop_rate``; default 0).
    :param head_init_scale: the head's initial weights are trunc-normal(0.02) times this
        (VideoMAE's ``init_scale``, 0.001): the initial logits are near zero.
    """

    def __init__(self, *, num_classes: int, img_size: int = 224, patch_size: int = 16, num_frames: int = 16,
                 tubelet_size: int = 2, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, pos_embed: str = "1d", drop_path_rate: float = 0.1,
                 head_drop_rate: float = 0.0, head_init_scale: float = 1e-3):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.depth = num_classes, depth
        self.architecture = dict(img_size=img_size, patch_size=patch_size, num_frames=num_frames,
                                 tubelet_size=tubelet_size, embed_dim=embed_dim, depth=depth,
                                 num_heads=num_heads, mlp_ratio=mlp_ratio, pos_embed=pos_embed)
        self.encoder = VideoMAEEncoder(**self.architecture, drop_path=drop_path_rate)
        # Mean pooling: VideoMAE's fine-tuning model has no final norm on the tokens ...
        self.encoder.norm = nn.Identity()
        # ... but one on the pooled feature.
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(head_drop_rate)
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(_init_weights)
        trunc_normal_(self.head.weight, std=0.02)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)
            self.head.bias.mul_(head_init_scale)

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.encoder.patch_embed.grid

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Shapes: ``(B, 3, T, H, W)`` -> pooled, normalised feature ``(B, D)``."""
        return self.fc_norm(self.encoder(video).mean(dim=1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Shapes: ``(B, D)`` -> logits ``(B, num_classes)``."""
        return self.head(self.head_drop(features))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(video))

    # ---- timm optimizer hooks (layer-wise lr decay, weight decay)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Layers for timm's layer decay: stem (patch embedding) = 0, block i = i + 1, the rest last."""
        return dict(stem=r"^encoder\.patch_embed", blocks=r"^encoder\.blocks\.(\d+)")

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """No parameter beyond timm's rule (1-d tensors: norms and biases) is exempt.

        VideoMAE exempts ``pos_embed`` and ``cls_token``; here the position table is a fixed
        buffer and there is no class token.
        """
        return set()

    # ---- constructors from checkpoints

    @classmethod
    def from_pretrain_checkpoint(cls, path: str | Path, num_classes: int, **overrides: Any) -> VideoClassifier:
        """Build from a ``train_joint.py`` checkpoint: the architecture from its ``config``,
        the encoder weights from its ``mae`` state dict (strict, ``encoder.norm`` skipped).

        :param overrides: constructor arguments that replace the checkpoint's, e.g.
            ``drop_path_rate=0.1``, ``num_frames=16`` (the position table is recomputed).
        """
        state, architecture = read_tats_checkpoint(path)
        model = cls(num_classes=num_classes, **{**architecture, **overrides})
        model.load_encoder_state(state, source=str(path))
        return model

    @classmethod
    def from_videomae_checkpoint(cls, path: str | Path, num_classes: int, *, size: str = "base",
                                 **overrides: Any) -> VideoClassifier:
        """Build a ``size`` classifier and load an official VideoMAE checkpoint into it.

        Pretraining layout (``encoder.*``, decoder keys ignored): the encoder is loaded
        strictly, ``fc_norm`` and ``head`` start fresh. Fine-tuned layout (``blocks.*``,
        ``fc_norm.*``, ``head.*``): everything is loaded strictly; the head's class count
        must equal ``num_classes``.
        """
        model = cls(num_classes=num_classes, **{**encoder_arguments(size), **overrides})
        state = read_state_dict(path)
        if any(key.startswith("encoder.") for key in state):
            model.load_encoder_state(state, source=str(path))
        else:
            model.load_finetuned_state(state, source=str(path))
        return model

    def load_encoder_state(self, state: dict[str, torch.Tensor], *, source: str) -> None:
        """Load the ``encoder.*`` entries of a pretraining state dict (other entries ignored)."""
        encoder_state = {k: v for k, v in state.items() if k.startswith("encoder.")}
        if not encoder_state:
            raise CheckpointMismatchError(f"{source} holds no 'encoder.*' keys: not a VideoMAE/TATS pretraining state dict "
                               f"(first keys: {sorted(state)[:5]})")
        encoder_state = {k: v for k, v in encoder_state.items() if k not in PRETRAIN_ONLY_KEYS}
        expected = {k: v for k, v in self.state_dict().items() if k.startswith("encoder.")}
        check_keys(encoder_state, expected, source=source, target=f"{type(self).__name__}.encoder")
        self.load_state_dict(encoder_state, strict=False)  # every encoder key checked above; fc_norm, head stay new

    def load_finetuned_state(self, state: dict[str, torch.Tensor], *, source: str) -> None:
        """Load a VideoMAE fine-tuned state dict (``blocks.*``, ``fc_norm.*``, ``head.*``) strictly."""
        renamed = {(k if k.split(".")[0] in ("fc_norm", "head") else f"encoder.{k}"): v for k, v in state.items()}
        check_keys(renamed, self.state_dict(), source=source, target=type(self).__name__)
        self.load_state_dict(renamed, strict=True)


def _init_weights(module: nn.Module) -> None:
    # VideoMAE's fine-tuning initialisation: trunc-normal(0.02) linears, unit LayerNorms.
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ---- checkpoint reading (shared with the linear probe and the visualisation)

def load_file(path: Path, *, weights_only: bool, hint: str) -> Any:
    """``torch.load`` on CPU; a file that is not a torch checkpoint (an HDF5 dump, a truncated or foreign
    file) is one :class:`runtime.errors.CheckpointError` naming it and ``hint``, not an unpickling traceback."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # official files pickle their args
            return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # noqa: BLE001 - any failure to unpickle: not a checkpoint we can read
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # torch's message has terminal colours
        first = text.splitlines()[0] if text else type(error).__name__
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({type(error).__name__}: {first[:160]}); "
                              f"{hint}") from error


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """An official VideoMAE file: ``{"model": sd}``, ``{"module": sd}``, ``{"state_dict": sd}`` or a bare
    state dict; a DistributedDataParallel ``module.`` prefix is stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = load_file(path, weights_only=True, hint="checkpoint_format=videomae expects an official VideoMAE "
                           "file; for a train_joint.py checkpoint use checkpoint_format=tats")
    state = checkpoint
    for key in ("model", "module", "state_dict"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            state = checkpoint[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{path} does not hold a state dict (expected tensors under 'model', 'module', "
                           "'state_dict' or at the top level)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def read_tats_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A ``train_joint.py`` checkpoint's MAE state dict and its encoder architecture.

    The architecture comes from the resolved config stored in the file (``config.model.name``,
    ``config.model.img_size``, ``config.data.num_frames``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = load_file(path, weights_only=False, hint="expected a train_joint.py checkpoint "
                           "(checkpoint-latest.pt of a run), or an official VideoMAE file with checkpoint_format=videomae")
    if not isinstance(checkpoint, dict) or "mae" not in checkpoint or "config" not in checkpoint:
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointMismatchError(f"{path} is not a train_joint.py checkpoint (needs keys 'mae' and 'config', found "
                           f"{found}); for an official VideoMAE file use checkpoint_format=videomae")
    return checkpoint["mae"], tats_architecture(checkpoint["config"])


def tats_architecture(config: dict[str, Any]) -> dict[str, Any]:
    """Encoder arguments from a ``train_joint.py`` resolved config (a plain dict)."""
    model, data = config["model"], config["data"]
    return encoder_arguments(model["name"], img_size=model.get("img_size"), num_frames=data.get("num_frames"))


def check_keys(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], *, source: str,
               target: str) -> None:
    """Raise :class:`CheckpointMismatchError` listing missing and unexpected keys and shape mismatches."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if not (missing or unexpected or wrong_shape):
        return
    details = []
    if missing:
        details.append(f"missing keys ({len(missing)}): {missing[:8]}")
    if unexpected:
        details.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}")
    if wrong_shape:
        details.append("shape mismatch: " + ", ".join(
            f"{k} file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in wrong_shape[:8]))
    hint = " (is the model size right? e.g. model=base)" if wrong_shape or unexpected else ""
    raise CheckpointMismatchError(f"{source} does not match {target}: " + "; ".join(details) + hint)


def layer_scales(model: nn.Module, layer_decay: float) -> dict[str, float]:
    """The lr scale timm's layer decay gives each parameter, by name (for logs and tests)."""
    from timm.optim import param_groups_layer_decay

    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups_layer_decay(model, weight_decay=0.0, layer_decay=layer_decay)
    return {names[id(p)]: group["lr_scale"] for group in groups for p in group["params"]}
