"""What the user chose about a net's structure on the command line (`--backbone`, `-o`, `--num-classes`,
`--classes`, the input size), and the model card that follows from it. Torch-free.

One rule for class names, used by the zoo and every import route: names given with `--classes` win;
then names the weights or the folder carry (torchvision's published categories, a config's id2label);
a net with random weights and no class flags gets the street classes of the scene generator (so it can
be calibrated and checked offline); anything else is class_0 .. class_{N-1}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeseg.card import IMAGENET_MEAN, IMAGENET_STD, ModelCard, default_palette
from edgeseg.errors import EdgesegError

RGB = tuple[int, int, int]


@dataclass
class ModelChoice:
    backbone: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    classes: list[str] | None = None
    palette: list[RGB] | None = None
    input_size: tuple[int | None, int | None] | None = None  # --height/--width; either may be left out

    def __post_init__(self) -> None:
        if self.num_classes is not None and self.num_classes < 1:
            raise EdgesegError(f"--num-classes must be at least 1, got {self.num_classes}")
        if (
            self.classes is not None
            and self.num_classes is not None
            and len(self.classes) != self.num_classes
        ):
            raise EdgesegError(
                f"--classes lists {len(self.classes)} names but --num-classes is {self.num_classes}"
            )

    @property
    def count(self) -> int | None:
        """The class count the flags ask for (None: not given)."""
        return len(self.classes) if self.classes is not None else self.num_classes

    def size(self, default: tuple[int, int]) -> tuple[int, int]:
        """The size the net is exported at: each side given, the other from `default` (the card's)."""
        h, w = self.input_size or (None, None)
        return (h or default[0], w or default[1])

    def given(self) -> list[str]:
        """The structure flags that were given (a checkpoint carries its own and refuses them)."""
        flags = {
            "--backbone": self.backbone is not None,
            "-o": bool(self.options),
            "--num-classes": self.num_classes is not None,
            "--classes": self.classes is not None,
        }
        return [flag for flag, on in flags.items() if on]

    def check_count(self, found: int, where: str) -> None:
        if self.count is not None and self.count != found:
            raise EdgesegError(
                f"{where} has {found} classes but --classes/--num-classes asks for {self.count}"
            )

    def class_names(
        self, n: int, known: list[str] | None = None, *, random_weights: bool = False
    ) -> list[str]:
        """Names for `n` classes by the module's rule (see the docstring)."""
        from edgeseg.data.synth import SYNTH_CLASSES

        self.check_count(n, "the net")
        if self.classes is not None:
            return list(self.classes)
        if known is not None and len(known) == n:
            return list(known)
        if random_weights and self.count is None and n == len(SYNTH_CLASSES):
            return list(SYNTH_CLASSES)
        return [f"class_{i}" for i in range(n)]

    def card(
        self,
        model: str,
        classes: list[str],
        *,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        input_size: tuple[int, int] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ModelCard:
        """The card of a net built by this choice: palette from --classes, else the street colours for
        the street classes, else the Pascal VOC colour map."""
        from edgeseg.data.synth import SYNTH_CLASSES, SYNTH_PALETTE

        if self.palette is not None:
            palette = list(self.palette)
        elif list(classes) == list(SYNTH_CLASSES):
            palette = list(SYNTH_PALETTE)
        else:
            palette = default_palette(len(classes))
        size = self.size(input_size or ModelCard.input_size)
        return ModelCard(
            model=model,
            classes=list(classes),
            palette=palette,
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            model_kwargs=dict(model_kwargs or {}),
            extra=dict(extra or {}),
            input_size=size,
        )
