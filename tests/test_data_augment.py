"""Augmentations keep image and mask aligned; the torch adapter batches fixed-size, normalised samples."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.card import IGNORE_INDEX
from edgeseg.data.augment import AugmentConfig, apply, train_augment
from edgeseg.errors import EdgesegError


def _pattern(h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """An image whose colour encodes its own label: label = column block, so alignment is checkable."""
    mask = (np.arange(w)[None, :] // 8 % 6).repeat(h, 0).astype(np.uint8)
    mask[: h // 3] = 6  # a band on top: flips must not move it, vertical crops must keep it on top
    lut = np.array([[40 * k, 255 - 30 * k, (70 * k) % 256] for k in range(7)], np.uint8)
    return lut[mask], mask


def _labels_from_colour(img: np.ndarray) -> np.ndarray:
    lut = np.array([[40 * k, 255 - 30 * k, (70 * k) % 256] for k in range(7)], np.int32)
    d = np.abs(img[:, :, None, :].astype(np.int32) - lut[None, None]).sum(-1)
    return d.argmin(-1).astype(np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_geometry_keeps_image_and_mask_aligned(seed: int) -> None:
    rgb, mask = _pattern()
    aug = train_augment(32, 40, AugmentConfig(scale=(0.5, 2.0), hflip=0.5, jitter_p=0.0), seed=seed)
    out_rgb, out_mask = apply(aug, rgb, mask)
    assert out_rgb.shape == (32, 40, 3) and out_mask.shape == (32, 40)
    labelled = out_mask != IGNORE_INDEX
    assert labelled.any()
    # Colour-decoded labels agree with the mask except on interpolated edges of the image.
    agree = (_labels_from_colour(out_rgb) == out_mask)[labelled].mean()
    assert agree > 0.85, agree
    # Masks are interpolated nearest: no invented label values.
    assert set(np.unique(out_mask)) <= set(range(7)) | {IGNORE_INDEX}


def test_flip_mirrors_both() -> None:
    rgb, mask = _pattern(16, 32)
    aug = train_augment(16, 32, AugmentConfig(scale=(1.0, 1.0), hflip=1.0, jitter_p=0.0), seed=0)
    out_rgb, out_mask = apply(aug, rgb, mask)
    np.testing.assert_array_equal(out_mask, mask[:, ::-1])
    np.testing.assert_array_equal(out_rgb, rgb[:, ::-1])


def test_padding_is_ignore_and_black() -> None:
    rgb, mask = _pattern(10, 12)
    aug = train_augment(20, 24, AugmentConfig(scale=(1.0, 1.0), hflip=0.0, jitter_p=0.0), seed=1)
    out_rgb, out_mask = apply(aug, rgb, mask)
    pad = out_mask == IGNORE_INDEX
    assert pad.sum() == 20 * 24 - 10 * 12
    assert (out_rgb[pad] == 0).all()


def test_colour_jitter_changes_image_not_mask() -> None:
    rgb, mask = _pattern(16, 16)
    aug = train_augment(
        16, 16, AugmentConfig(scale=(1.0, 1.0), hflip=0.0, jitter_p=1.0, brightness=0.5), seed=3
    )
    outs = [apply(aug, rgb, mask) for _ in range(4)]
    assert any(not np.array_equal(o[0], rgb) for o in outs)
    for _, m in outs:
        np.testing.assert_array_equal(m, mask)


def test_seeded_stream_is_reproducible() -> None:
    rgb, mask = _pattern()
    a = train_augment(24, 24, seed=5)
    b = train_augment(24, 24, seed=5)
    for _ in range(3):
        ra, rb = apply(a, rgb, mask), apply(b, rgb, mask)
        np.testing.assert_array_equal(ra[0], rb[0])
        np.testing.assert_array_equal(ra[1], rb[1])


def test_bad_configs() -> None:
    with pytest.raises(EdgesegError, match="scale"):
        train_augment(8, 8, AugmentConfig(scale=(2.0, 1.0)))
    with pytest.raises(EdgesegError, match="positive"):
        train_augment(0, 8)
    rgb, mask = _pattern()
    with pytest.raises(EdgesegError, match="differ"):
        apply(train_augment(8, 8), rgb, mask[:-1])


def test_torch_dataset_batches() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from edgeseg.data import open_dataset
    from edgeseg.data.torch_dataset import SegmentationTorchDataset, worker_init_fn
    from edgeseg.preprocess import Normalizer

    ds = open_dataset("synth:4@30x50")
    plain = SegmentationTorchDataset(ds, (24, 40))
    x, y = plain[1]
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 24, 40)
    assert y.dtype == torch.int64 and tuple(y.shape) == (24, 40)
    rgb, mask = plain.sample(1)
    np.testing.assert_allclose(x.numpy(), Normalizer(plain.mean, plain.std)(rgb), atol=1e-6)
    np.testing.assert_array_equal(y.numpy(), mask)
    aug = SegmentationTorchDataset(ds, (24, 40), augment=True, seed=0)
    loader = torch.utils.data.DataLoader(aug, batch_size=2, worker_init_fn=worker_init_fn)
    xb, yb = next(iter(loader))
    assert tuple(xb.shape) == (2, 3, 24, 40) and tuple(yb.shape) == (2, 24, 40)
    assert set(torch.unique(yb).tolist()) <= set(range(len(ds.classes))) | {IGNORE_INDEX}
    native = SegmentationTorchDataset(ds, None)
    assert tuple(native[0][0].shape) == (3, 30, 50)
    with pytest.raises(EdgesegError, match="fixed output size"):
        SegmentationTorchDataset(ds, None, augment=True)


def test_torch_dataset_crops_keep_the_input_scale() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from edgeseg.data import open_dataset
    from edgeseg.data.augment import AugmentConfig
    from edgeseg.data.torch_dataset import SegmentationTorchDataset

    ds = open_dataset("synth:2@32x64")
    no_scale = AugmentConfig(scale=(1.0, 1.0), brightness=0, contrast=0, saturation=0, hue=0, hflip=0)
    crops = SegmentationTorchDataset(ds, (32, 64), augment=no_scale, crop=(32, 32), seed=1)
    rgb, mask = crops.sample(0)
    assert rgb.shape == (32, 32, 3) and mask.shape == (32, 32)
    full_rgb, full_mask = SegmentationTorchDataset(ds, (32, 64)).sample(0)
    # a crop at scale 1 is a window of the full-size image, not a squeezed copy of it
    offsets = [x for x in range(33) if np.array_equal(full_mask[:, x : x + 32], mask)]
    assert offsets and any(np.array_equal(full_rgb[:, x : x + 32], rgb) for x in offsets)
    with pytest.raises(EdgesegError, match="needs augmentation"):
        SegmentationTorchDataset(ds, (32, 64), crop=(32, 32))
