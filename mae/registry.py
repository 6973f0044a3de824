"""Model sizes, registered with timm so ``timm.create_model`` knows every one.

| size  | encoder (width, depth, heads) | decoder (width, heads) | input          | tokens |
|-------|-------------------------------|------------------------|----------------|--------|
| micro | 96, 4, 3                      | 64, 2 (depth 2)        | 16 x 32 x 32   | 128    |
| tiny  | 96, 4, 3                      | 64, 2 (depth 2)        | 16 x 64 x 64   | 128    |
| small | 384, 12, 6                    | 192, 3                 | 16 x 224 x 224 | 1568   |
| base  | 768, 12, 12 (the paper's)     | 384, 6                 | 16 x 224 x 224 | 1568   |
| large | 1024, 24, 16                  | 512, 8                 | 16 x 224 x 224 | 1568   |

Every size uses 2 x 16 x 16 tubelets and decoder depth 4 unless overridden (micro and tiny: 2), and
VideoMAE's 1-D position table. ``micro`` is the CPU testbed's: tiny's widths on 2 x 8 x 8
tubelets of 32-pixel frames, with a factorised 3-D position table (see docs/testbed.md).
"""

from __future__ import annotations

import timm
from timm.models import register_model

from mae.model import PretrainVideoMAE

SIZES: dict[str, dict] = {
    "micro": dict(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3,
                  decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2, pos_embed="3d"),
    "tiny": dict(img_size=64, embed_dim=96, depth=4, num_heads=3,
                 decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2),
    "small": dict(embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=192, decoder_num_heads=3),
    "base": dict(embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=384, decoder_num_heads=6),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, decoder_embed_dim=512, decoder_num_heads=8),
}

TIMM_NAMES = {
    "micro": "pretrain_videomae_micro_patch8_32",
    "tiny": "pretrain_videomae_tiny_patch16_64",
    "small": "pretrain_videomae_small_patch16_224",
    "base": "pretrain_videomae_base_patch16_224",
    "large": "pretrain_videomae_large_patch16_224",
}


def _build(size: str, pretrained: bool, **overrides) -> PretrainVideoMAE:
    if pretrained:
        raise ValueError(
            "pretrained weights are never downloaded: build the model, then call "
            "mae.load_videomae_checkpoint(model, path) on a file you have"
        )
    for timm_kwarg in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        overrides.pop(timm_kwarg, None)  # passed by timm.create_model, not model arguments
    return PretrainVideoMAE(**{**SIZES[size], **overrides})


def _register(size: str) -> None:
    """Register ``TIMM_NAMES[size]`` with timm (an entry point named so, in this module)."""

    def entry_point(pretrained: bool = False, **kwargs) -> PretrainVideoMAE:
        return _build(size, pretrained, **kwargs)

    entry_point.__name__ = entry_point.__qualname__ = TIMM_NAMES[size]
    entry_point.__doc__ = f"The {size} VideoMAE (timm entry point)."
    globals()[TIMM_NAMES[size]] = register_model(entry_point)


for _size in TIMM_NAMES:
    _register(_size)


def create_model_from_config(model_config, *, num_frames: int) -> PretrainVideoMAE:
    """The MAE a run's ``model`` config describes (a DictConfig or a stored dict; keys a run saved
    before they existed take their defaults)."""
    get = model_config.get
    overrides = dict(num_frames=num_frames, drop_path_rate=get("drop_path_rate", 0.0),
                     norm_target=get("norm_target", True), loss=get("loss", "mse"))
    for key in ("img_size", "decoder_depth"):
        if get(key) is not None:
            overrides[key] = get(key)
    return create_model(get("name"), **overrides)


def create_model(name: str, **overrides) -> PretrainVideoMAE:
    """Build a VideoMAE by size (``micro|tiny|small|base|large``) or by its timm name.

    ``overrides`` replace constructor arguments, e.g. ``decoder_depth=4``, ``num_frames=8``.
    """
    timm_name = TIMM_NAMES.get(name, name)
    if timm_name not in TIMM_NAMES.values():
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(TIMM_NAMES)} or {sorted(TIMM_NAMES.values())}")
    return timm.create_model(timm_name, **overrides)
