"""Downstream evaluation of pretrained encoders: fine-tuning, linear probing, visualisation.

Entry points (each ``python -m downstream.<name> --help`` or ``key=value`` overrides):

- :mod:`downstream.finetune`: end-to-end action-recognition fine-tuning (paper Table 7);
- :mod:`downstream.linear_probe`: a linear classifier on frozen, mean-pooled features;
- :mod:`downstream.visualise`: masks, policy probabilities, reconstructions and trajectory
  attention of a ``train_joint.py`` checkpoint on one clip.

Shared pieces: :mod:`downstream.evaluate` (multi-view testing, top-k),
:mod:`downstream.video_aug` (clip-consistent RandAugment, crops, video Mixup/CutMix),
:mod:`downstream.datasets` (labelled data from the ``data`` config group).
"""
