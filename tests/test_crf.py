"""The dense CRF (edgeseg.crf, `eval --crf`) with the real library (pydensecrf2): it must move a blurred,
shifted score boundary back onto the image's colour edge, leave a confident prediction alone, run inside
evaluation and on the command line, and a missing library is one line naming the extra (exit 2)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.card import ModelCard, default_palette
from edgeseg.cli import app
from edgeseg.errors import EdgesegError, ExitCode
from edgeseg.lazy import available
from edgeseg.preprocess import fit
from edgeseg.runtime.backends import Backend

H, W, EDGE, SHIFT = 48, 96, 40, 12
RED, BLUE = (200, 40, 40), (40, 40, 200)


def two_regions() -> tuple[np.ndarray, np.ndarray]:
    """A red | blue image with its colour edge at column EDGE, and the true labels (0 | 1)."""
    image = np.empty((H, W, 3), np.uint8)
    image[:, :EDGE], image[:, EDGE:] = RED, BLUE
    truth = np.zeros((H, W), np.uint8)
    truth[:, EDGE:] = 1
    return image, truth


def blurred_shifted_logits(num_classes: int = 2, width: float = 6.0) -> np.ndarray:
    """What an output-stride-8 net upsampled bilinearly looks like: a soft ramp whose 50 % point sits
    SHIFT pixels right of the real edge."""
    x = np.arange(W, dtype=np.float32)
    ramp = np.tile((x + 0.5 - (EDGE + SHIFT)) / width, (H, 1))
    logits = np.zeros((num_classes, H, W), np.float32)
    logits[1] = ramp  # class 1 wins right of EDGE + SHIFT, with low confidence near it
    return logits


needs_crf = pytest.mark.skipif(not available("pydensecrf"), reason="pip install 'edgeseg[crf]'")


@needs_crf
def test_crf_snaps_a_shifted_boundary_back_to_the_colour_edge():
    from edgeseg.crf import refine, refine_labels

    image, truth = two_regions()
    logits = blurred_shifted_logits()
    before = logits.argmax(0)
    assert (before != truth).sum() == H * SHIFT  # the net is wrong on a SHIFT-wide band
    after = refine_labels(image, logits)
    assert after.dtype == np.uint8 and after.shape == (H, W)
    assert (after == truth).mean() > 0.99, np.flatnonzero(after[H // 2] != truth[H // 2])
    q = refine(image, logits)
    assert q.shape == (2, H, W) and np.allclose(q.sum(0), 1, atol=1e-4)  # marginals


@needs_crf
def test_crf_follows_colour_not_position():
    """The same scores on an image whose edge sits elsewhere end at that edge: the image decides."""
    from edgeseg.crf import refine_labels

    image = np.empty((H, W, 3), np.uint8)
    edge = EDGE + 2 * SHIFT  # now the scores' boundary is SHIFT pixels left of the colour edge
    image[:, :edge], image[:, edge:] = RED, BLUE
    after = refine_labels(image, blurred_shifted_logits())
    row = after[H // 2]
    assert (row[: edge - 2] == 0).all() and (row[edge + 2 :] == 1).all()


@needs_crf
def test_crf_leaves_a_confident_prediction_alone():
    from edgeseg.crf import refine_labels

    image, truth = two_regions()
    logits = np.stack([(truth == c).astype(np.float32) * 20 for c in range(2)])
    assert np.array_equal(refine_labels(image, logits), truth)


@needs_crf
def test_probabilities_in_give_the_same_result_as_logits():
    from edgeseg.crf import refine_labels, softmax

    image, _ = two_regions()
    logits = blurred_shifted_logits(num_classes=3)
    assert np.array_equal(
        refine_labels(image, logits), refine_labels(image, softmax(logits), probabilities=True)
    )


@needs_crf
def test_bad_parameters_and_shapes_are_one_line_errors():
    from edgeseg.crf import refine

    image, _ = two_regions()
    with pytest.raises(EdgesegError, match="do not match the image"):
        refine(image, np.zeros((2, H, W - 1), np.float32))
    with pytest.raises(EdgesegError, match="uint8 image"):
        refine(image.astype(np.float32), blurred_shifted_logits())


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("iterations", 2.5, "iterations must be an integer >= 1, not 2.5"),
        ("iterations", 0, "iterations must be an integer >= 1, not 0"),
        ("iterations", True, "iterations must be an integer >= 1, not True"),
        ("iterations", "10", "iterations must be an integer >= 1, not '10'"),
        ("bilateral_xy", 0, "bilateral_xy must be a finite number > 0, not 0"),
        ("bilateral_rgb", float("nan"), "bilateral_rgb must be a finite number > 0, not nan"),
        ("gaussian_xy", float("inf"), "gaussian_xy must be a finite number > 0, not inf"),
        ("gaussian_weight", -3.0, "gaussian_weight must be a finite number > 0, not -3.0"),
        ("bilateral_weight", "4", "bilateral_weight must be a finite number > 0, not '4'"),
    ],
)
def test_crf_parameters_are_checked_when_made_in_one_line(field, value, needle):
    """pydensecrf takes a float iteration count or a NaN width without a word; CRFParams refuses them,
    and every bad field is named in the same line."""
    from edgeseg.crf import CRFParams

    with pytest.raises(EdgesegError) as err:
        CRFParams(**{field: value})
    assert needle in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(EdgesegError, match=r"iterations .*; gaussian_xy "):
        CRFParams(iterations=0, gaussian_xy=0)
    assert CRFParams(iterations=np.int64(5), bilateral_xy=np.float32(30)).iterations == 5


def test_paper_defaults():
    """DeepLab's settings: 10 mean-field iterations, w2 = 3, sigma_gamma = 3 (fixed in the paper), and the
    released script's w1 = 4, sigma_alpha = 49, sigma_beta = 5."""
    from edgeseg.crf import CRFParams

    assert CRFParams().to_dict() == {
        "iterations": 10,
        "bilateral_weight": 4.0,
        "bilateral_xy": 49.0,
        "bilateral_rgb": 5.0,
        "gaussian_weight": 3.0,
        "gaussian_xy": 3.0,
    }


def test_scores_follow_the_preprocessing_geometry_back_to_the_frame():
    """Letterboxed into the net: the border is cropped and the scores resized to the frame, so the CRF
    runs on the frame's own pixels."""
    from edgeseg.crf import scores_to_frame

    frame = np.zeros((30, 90, 3), np.uint8)
    fitted, geom = fit(frame, (48, 48), "letterbox")
    logits = np.zeros((2, 48, 48), np.float32)
    top, left = geom.offset
    ch, cw = geom.content_hw
    logits[1, top : top + ch, left + cw // 2 : left + cw] = 5.0  # right half of the content is class 1
    back = scores_to_frame(logits, geom)
    assert back.shape == (2, 30, 90)
    labels = back.argmax(0)
    assert (labels[:, :40] == 0).all() and (labels[:, 50:] == 1).all()


class BlurryBackend(Backend):
    """A 'net' that returns the blurred, shifted scores whatever the frame (at the frame's size)."""

    name = "blurry"

    def __init__(self):
        self.path = "blurry"
        self.card = ModelCard(
            model="blurry", classes=["a", "b"], palette=default_palette(2), input_size=(H, W)
        )

    def run_impl(self, batch):
        return blurred_shifted_logits()[None]


class Regions:
    classes = ["a", "b"]
    palette = default_palette(2)

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return two_regions()


@needs_crf
def test_evaluate_with_crf_scores_the_refined_labels():
    from edgeseg.crf import CRFParams
    from edgeseg.evaluate import evaluate

    plain = evaluate(BlurryBackend(), Regions())
    refined = evaluate(BlurryBackend(), Regions(), crf=CRFParams())
    assert plain.miou < 0.8 and refined.miou > 0.98


@needs_crf
def test_eval_crf_on_the_command_line(_isolated_workdir):
    """`edgeseg eval --crf` on the shipped model: the report names the CRF and its parameters, and the
    refined labels are not the plain ones."""
    r = CliRunner().invoke(app, ["eval", "default", "--data", "synth:2@64x128", "--crf", "--json"])
    assert r.exit_code == 0, r.output
    with_crf = json.loads(r.stdout)
    assert with_crf["crf"]["bilateral_xy"] == 49.0 and with_crf["images"] == 2
    r = CliRunner().invoke(app, ["eval", "default", "--data", "synth:2@64x128", "--json"])
    plain = json.loads(r.stdout)
    assert plain["crf"] is None and plain["confusion"] != with_crf["confusion"]


def test_eval_crf_without_the_library_is_one_line_naming_the_extra(monkeypatch, _isolated_workdir):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # as if not installed: import raises ImportError
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    r = CliRunner().invoke(app, ["eval", "default", "--data", "synth:1", "--crf"])
    assert r.exit_code == ExitCode.BAD_INPUT
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'edgeseg[crf]'" in lines[0], r.output


@needs_crf
def test_eval_crf_on_a_labels_model_is_a_clear_error():
    from edgeseg.crf import CRFParams
    from edgeseg.evaluate import evaluate

    backend = BlurryBackend()
    backend.card.output = "labels"
    with pytest.raises(EdgesegError, match="outputs labels"):
        evaluate(backend, Regions(), crf=CRFParams())
