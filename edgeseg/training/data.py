"""Training's augmentation recipe. The dataset adapter itself is `edgeseg.data.torch_dataset`
(shared geometry and normalisation with the runtime; augmentation from `edgeseg.data.augment`)."""

from __future__ import annotations

from edgeseg.data.augment import AugmentConfig

# Random scale 0.5-1.75x, crop back to the input size (padding labelled ignore), flip, colour jitter:
# the recipe the shipped default model was trained with (docs/default-model.md).
TRAIN_AUGMENT = AugmentConfig(
    scale=(0.5, 1.75), hflip=0.5, brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02, jitter_p=0.8
)
