"""VideoMAE: the masked autoencoder f_phi (paper Section 3.1, Table 8).

Public API: :func:`create_model`, :func:`load_videomae_checkpoint`, the maskers and the
reconstruction loss. Mask convention everywhere: bool ``(B, N)``, True = visible.
"""

from mae.checkpoint import load_mae_weights, load_videomae_checkpoint
from mae.classifier import VideoClassifier
from mae.masking import indices_to_mask, mask_to_indices, num_visible, random_mask, tube_mask
from mae.model import PretrainVideoMAE
from mae.pos_embed import sinusoid_table
from mae.registry import SIZES, TIMM_NAMES, create_model
from mae.target import ReconstructionLoss, patchify_target, reconstruction_loss

__all__ = [
    "PretrainVideoMAE", "ReconstructionLoss", "SIZES", "TIMM_NAMES", "create_model",
    "indices_to_mask", "load_mae_weights", "load_videomae_checkpoint", "mask_to_indices", "num_visible",
    "patchify_target", "random_mask", "reconstruction_loss", "sinusoid_table", "tube_mask", "VideoClassifier",
]
