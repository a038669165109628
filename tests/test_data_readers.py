"""Dataset readers on small fixtures written in each format's exact on-disk layout, incl. broken ones."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from edgeseg.data import detect_format, open_dataset
from edgeseg.data.cityscapes import CITYSCAPES_CLASSES, ID_TO_TRAIN_ID
from edgeseg.data.plain import in_val_split, read_classes_file, write_classes_file
from edgeseg.data.voc import VOC_CLASSES, VOC_PALETTE
from edgeseg.errors import EdgesegError

H, W = 12, 16


def _rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_gray(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask)


# ------------------------------------------------------------------------------------------ plain
def _plain(root: Path, n: int = 3, classes: int = 3, txt: bool = False) -> list[np.ndarray]:
    if txt:
        (root).mkdir(parents=True, exist_ok=True)
        (root / "classes.txt").write_text("# name R G B\nbackground 0 0 0\nroad, 128, 64, 128\ncar\n")
    else:
        write_classes_file(root, [f"c{i}" for i in range(classes)], [(i * 40, 0, 0) for i in range(classes)])
    masks = []
    for i in range(n):
        rgb = _rgb(i)
        mask = (np.arange(H * W).reshape(H, W) + i) % classes
        mask[0, 0] = 255
        _write_rgb(root / "images" / f"img{i}.png", rgb)
        _write_gray(root / "masks" / f"img{i}.png", mask.astype(np.uint8))
        masks.append(mask.astype(np.uint8))
    return masks


def test_plain_reads_pairs_classes_and_hash(tmp_path: Path) -> None:
    masks = _plain(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.format == "plain" and len(ds) == 3
    assert ds.classes == ["c0", "c1", "c2"] and ds.palette[1] == (40, 0, 0)
    rgb, mask = ds[2]
    np.testing.assert_array_equal(rgb, _rgb(2))
    np.testing.assert_array_equal(mask, masks[2])
    assert ds.name(1) == "img1"
    h1 = ds.listing_hash()
    assert h1 == open_dataset(tmp_path).listing_hash()
    _write_gray(tmp_path / "masks" / "img1.png", np.zeros((H, W), np.uint8))  # different size on disk
    assert open_dataset(tmp_path).listing_hash() != h1


def test_exif_rotation_is_ignored(tmp_path: Path) -> None:
    from edgeseg.data.io import read_image

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(_rgb(0)).save(tmp_path / "phone.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "phone.jpg").shape == (H, W, 3)


def test_plain_colour_coded_masks(tmp_path: Path) -> None:
    masks = _plain(tmp_path, n=1)
    ids = masks[0].copy()
    ids[ids == 255] = 0
    palette = [(0, 0, 0), (40, 0, 0), (80, 0, 0)]
    colour = np.asarray(palette, np.uint8)[ids]
    colour[5, 5], ids[5, 5] = (80, 0, 0), 2
    _write_rgb(tmp_path / "masks" / "img0.png", colour)
    _, mask = open_dataset(tmp_path)[0]
    np.testing.assert_array_equal(mask, np.asarray(ids))
    colour[1, 2] = (1, 2, 3)
    _write_rgb(tmp_path / "masks" / "img0.png", colour)
    with pytest.raises(EdgesegError, match=r"no class's colour: \(1, 2, 3\)"):
        open_dataset(tmp_path)[0]


def test_plain_classes_txt_with_and_without_colours(tmp_path: Path) -> None:
    _plain(tmp_path, txt=True)
    names, palette = read_classes_file(tmp_path)
    assert names == ["background", "road", "car"]
    assert palette[:2] == [(0, 0, 0), (128, 64, 128)] and len(palette[2]) == 3


def test_plain_splits(tmp_path: Path) -> None:
    _plain(tmp_path, n=30)
    train, val = open_dataset(tmp_path, split="train"), open_dataset(tmp_path, split="val")
    assert len(train) + len(val) == 30 and len(val) >= 1
    assert not {train.name(i) for i in range(len(train))} & {val.name(i) for i in range(len(val))}
    assert all(in_val_split(val.name(i)) for i in range(len(val)))
    (tmp_path / "val.txt").write_text("img3\nimg4\n")
    assert [open_dataset(tmp_path, split="val").name(i) for i in range(2)] == ["img3", "img4"]
    with pytest.raises(EdgesegError, match="no split 'test'"):
        open_dataset(tmp_path, split="test")


def test_plain_split_subfolders(tmp_path: Path) -> None:
    _plain(tmp_path / "train", n=2)
    _plain(tmp_path / "val", n=1)
    write_classes_file(tmp_path, ["c0", "c1", "c2"], [(0, 0, 0)] * 3)
    assert len(open_dataset(tmp_path, split="train")) == 2
    assert len(open_dataset(tmp_path, split="val")) == 1


def test_plain_missing_pairs_are_named(tmp_path: Path) -> None:
    _plain(tmp_path)
    (tmp_path / "masks" / "img1.png").unlink()
    _write_gray(tmp_path / "masks" / "stray.png", np.zeros((H, W), np.uint8))
    with pytest.raises(
        EdgesegError, match=r"image\(s\) without a mask: img1.*mask\(s\) without an image: stray"
    ):
        open_dataset(tmp_path)


def test_plain_broken_files(tmp_path: Path) -> None:
    _plain(tmp_path)
    ds = open_dataset(tmp_path)
    (tmp_path / "images" / "img0.png").write_bytes(b"not a png at all")
    with pytest.raises(EdgesegError, match="cannot decode image .*img0.png"):
        ds[0]
    _write_gray(tmp_path / "masks" / "img1.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(EdgesegError, match=r"mask .*img1.png is 16x13 but image .*img1.png is 16x12"):
        ds[1]
    bad = np.zeros((H, W), np.uint8)
    bad[3, 3], bad[4, 4] = 7, 255  # 7 is out of range for 3 classes; 255 is fine
    _write_gray(tmp_path / "masks" / "img2.png", bad)
    with pytest.raises(EdgesegError, match=r"img2.png has label values 7 outside 0..2"):
        ds[2]
    _write_rgb(tmp_path / "masks" / "img2.png", _rgb(9))
    with pytest.raises(EdgesegError, match="no class's colour"):
        ds[2]
    _write_gray(
        tmp_path / "masks" / "img2.png",
        np.full((H, W, 3), 1000, np.uint16) * np.arange(1, 4, dtype=np.uint16),
    )
    with pytest.raises(EdgesegError, match="single-channel"):
        ds[2]
    (tmp_path / "masks" / "img2.png").write_bytes(b"")
    with pytest.raises(EdgesegError, match="empty"):
        ds[2]


def test_empty_unknown_and_bad_class_files(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    write_classes_file(tmp_path, ["a"], [(1, 2, 3)])
    with pytest.raises(EdgesegError, match="no image/mask pairs"):
        open_dataset(tmp_path)
    with pytest.raises(EdgesegError, match="unknown dataset layout"):
        open_dataset(tmp_path / "images")
    with pytest.raises(EdgesegError, match="not found"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "classes.json").write_text("{broken")
    with pytest.raises(EdgesegError, match="not valid JSON"):
        open_dataset(tmp_path)
    (tmp_path / "classes.json").write_text(json.dumps({"classes": [{"name": "a", "color": [1, 2]}]}))
    with pytest.raises(EdgesegError, match="three integers"):
        open_dataset(tmp_path)
    (tmp_path / "classes.json").unlink()
    with pytest.raises(EdgesegError, match="no classes.json or classes.txt"):
        open_dataset(tmp_path)


# ------------------------------------------------------------------------------------------ VOC
def _palette_png(path: Path, indices: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(indices, mode="P")
    flat = [v for rgb in VOC_PALETTE for v in rgb] + [0] * (3 * (256 - len(VOC_PALETTE)))
    flat[3 * 255 : 3 * 256] = [224, 224, 192]  # VOC's border colour
    im.putpalette(flat)
    im.save(path)


def _voc(root: Path) -> dict[str, np.ndarray]:
    base = root / "VOCdevkit" / "VOC2012"
    masks = {}
    ids = ["2007_000032", "2007_000039", "2008_000123"]
    for k, i in enumerate(ids):
        rgb = _rgb(k)
        path = base / "JPEGImages" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(path, quality=95)
        mask = np.zeros((H, W), np.uint8)
        mask[2:8, 3:9] = [1, 15, 20][k]  # aeroplane, person, tvmonitor
        mask[2, 3:9] = 255  # object border
        _palette_png(base / "SegmentationClass" / f"{i}.png", mask)
        masks[i] = mask
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(ids[:2]) + "\n")
    (sets / "val.txt").write_text(ids[2] + "\n")
    (sets / "trainval.txt").write_text("\n".join(ids) + "\n")
    return masks


def test_voc_reads_palette_indices_exactly(tmp_path: Path) -> None:
    masks = _voc(tmp_path)
    assert detect_format(tmp_path) == "voc"
    ds = open_dataset(tmp_path, split="train")
    assert ds.format == "voc" and ds.classes == VOC_CLASSES and len(ds.classes) == 21
    assert ds.palette[15] == (192, 128, 128)  # person in VOC's colour map
    assert len(ds) == 2 and ds.name(1) == "2007_000039"
    rgb, mask = ds[1]
    assert rgb.shape == (H, W, 3)
    np.testing.assert_array_equal(mask, masks["2007_000039"])  # indices, not colours
    assert len(open_dataset(tmp_path, split="val")) == 1
    assert len(open_dataset(tmp_path)) == 3


def test_voc_errors(tmp_path: Path) -> None:
    _voc(tmp_path)
    base = tmp_path / "VOCdevkit" / "VOC2012"
    with pytest.raises(EdgesegError, match="no VOC split 'test'"):
        open_dataset(tmp_path, split="test")
    (base / "JPEGImages" / "2007_000039.jpg").unlink()
    with pytest.raises(EdgesegError, match="1 without JPEGImages/<id>.jpg: 2007_000039"):
        open_dataset(tmp_path, split="train")
    bad = np.full((H, W), 30, np.uint8)
    _palette_png(base / "SegmentationClass" / "2008_000123.png", bad)
    with pytest.raises(EdgesegError, match="label values 30 outside 0..20"):
        open_dataset(tmp_path, split="val")[0]
    (base / "SegmentationClass" / "2008_000123.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(EdgesegError, match="2008_000123.png"):
        open_dataset(tmp_path, split="val")[0]


# ------------------------------------------------------------------------------------------ Cityscapes
def _cityscapes(root: Path) -> np.ndarray:
    label_ids = np.zeros((H, W), np.uint8)
    label_ids[:4] = 23  # sky
    label_ids[4:8] = 26  # car
    label_ids[8:] = 7  # road
    label_ids[8:, :2] = 9  # parking -> ignore
    label_ids[0, 0] = 1  # ego vehicle -> ignore
    for split, city, n in (("train", "aachen", 2), ("train", "bochum", 1), ("val", "frankfurt", 1)):
        for k in range(n):
            stem = f"{city}_{k:06d}_000019"
            _write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _rgb(k))
            gt = root / "gtFine" / split / city
            _write_gray(gt / f"{stem}_gtFine_labelIds.png", label_ids)
            _write_gray(gt / f"{stem}_gtFine_instanceIds.png", label_ids)  # ignored sibling files
            _write_rgb(gt / f"{stem}_gtFine_color.png", _rgb(5))
    return label_ids


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path: Path) -> None:
    _cityscapes(tmp_path)
    assert detect_format(tmp_path) == "cityscapes"
    ds = open_dataset(tmp_path, split="train")
    assert len(ds) == 3 and ds.classes == CITYSCAPES_CLASSES and len(ds.classes) == 19
    assert ds.name(0) == "aachen_000000_000019"
    _, mask = ds[0]
    assert mask[1, 5] == CITYSCAPES_CLASSES.index("sky") == ID_TO_TRAIN_ID[23]
    assert mask[5, 5] == CITYSCAPES_CLASSES.index("car")
    assert mask[10, 5] == CITYSCAPES_CLASSES.index("road") == 0
    assert mask[10, 0] == 255 and mask[0, 0] == 255
    assert len(open_dataset(tmp_path, split="val")) == 1
    assert len(open_dataset(tmp_path)) == 4


def test_cityscapes_errors(tmp_path: Path) -> None:
    _cityscapes(tmp_path)
    with pytest.raises(EdgesegError, match="unknown Cityscapes split"):
        open_dataset(tmp_path, split="extra")
    with pytest.raises(EdgesegError, match="split 'test' missing"):
        open_dataset(tmp_path, split="test")
    gt = tmp_path / "gtFine" / "train" / "aachen"
    bad = np.full((H, W), 40, np.uint8)
    _write_gray(gt / "aachen_000001_000019_gtFine_labelIds.png", bad)
    with pytest.raises(EdgesegError, match="label values 40 outside 0..33"):
        open_dataset(tmp_path, split="train")[1]
    (gt / "aachen_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(EdgesegError, match="image\\(s\\) without a mask: aachen_000000_000019"):
        open_dataset(tmp_path, split="train")


def test_cityscapes_pre_converted_train_ids(tmp_path: Path) -> None:
    train_ids = np.full((H, W), 13, np.uint8)  # car
    train_ids[0] = 255
    gt = tmp_path / "gtFine" / "val" / "lindau"
    _write_rgb(tmp_path / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000019_leftImg8bit.png", _rgb(0))
    _write_gray(gt / "lindau_000000_000019_gtFine_labelTrainIds.png", train_ids)
    _, mask = open_dataset(tmp_path, split="val")[0]
    np.testing.assert_array_equal(mask, train_ids)
    _write_gray(gt / "lindau_000000_000019_gtFine_labelTrainIds.png", np.full((H, W), 19, np.uint8))
    with pytest.raises(EdgesegError, match="label values 19 outside 0..18"):
        open_dataset(tmp_path, split="val")[0]


def test_images_and_contact_sheets_are_written_by_one_writer(tmp_path):
    """write_image (RGB, JPEG quality) and the preview's contact sheet (BGR) encode through one
    write_bgr: the format the suffix names, one line for a suffix OpenCV cannot encode, nothing left."""
    from edgeseg.data.io import write_image
    from edgeseg.data.preview import write_preview

    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # red
    write_image(tmp_path / "red.png", rgb)
    assert tuple(cv2.imread(str(tmp_path / "red.png"))[0, 0]) == (0, 0, 200)  # BGR on disk
    for write in (lambda p: write_image(p, rgb), lambda p: write_preview(open_dataset("synth:1@24x48"), p)):
        with pytest.raises(EdgesegError, match=r"^cannot write an image with suffix '\.xyz': .*x\.xyz$"):
            write(tmp_path / "x.xyz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["red.png"]
