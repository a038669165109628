"""Deployable checkpoints: drop the optimizer/scheduler state (2-3x the weights for AdamW) and optionally
store the weights in FP16, so a checkpoint can ship inside a package or go to a robot."""

from __future__ import annotations

from pathlib import Path


def slim_checkpoint(src: str | Path, dst: str | Path, *, fp16: bool = True) -> Path:
    """Write `dst`: the same model, card, metrics and data hash as `src`, without training state.

    FP16 storage halves the file; `model_from_checkpoint` casts back to the model's FP32 parameters
    on load (`load_state_dict` copies across dtypes), so inference is unchanged apart from rounding.
    """
    from edgeseg.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(src)
    state = {
        k: (v.half() if fp16 and v.is_floating_point() else v).contiguous()
        for k, v in payload["model"].items()
    }
    card = payload["card"]
    extra = {**card.extra, "weights_dtype": "float16" if fp16 else "float32"}
    save_checkpoint(
        dst,
        state,
        card.replace(extra=extra),
        metrics=payload.get("metrics") or {},
        data_hash=payload.get("data_hash"),
    )
    return Path(dst)
