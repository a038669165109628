"""The on-device part of edgeseg, run end to end in a fresh interpreter (tests/test_python38.py runs it with
this machine's Python and, where one is installed, with Python 3.8 as JetPack 5.1's system Python).

What a Jetson does, against the fake TensorRT 8.5.2 (JetPack 5.1) and fake pycuda or cuda-python:
`edgeseg build x.onnx --target tensorrt`, `edgeseg run --model x.engine` on a stream (a synthetic one:
no camera here), `Segmenter` on a frame, and `edgeseg ros2 --help` with the node module imported (rclpy
comes with ROS and cannot run here). Prints, as JSON, what ran and every edgeseg module it imported.

    python tests/on_device.py WORKDIR [pycuda|cuda-python]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))


def tiny_onnx(path: Path, num_classes: int, size: tuple) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.card import ModelCard, default_palette

    w = np.random.default_rng(0).normal(size=(num_classes, 3, 1, 1)).astype(np.float32)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, *size])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, num_classes, *size])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["logits"])],
        "tiny",
        [x],
        [y],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    card = ModelCard(
        model="tiny",
        classes=[f"c{i}" for i in range(num_classes)],
        palette=default_palette(num_classes),
        input_size=size,
    )
    for k, v in card.to_metadata_props().items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, str(path))
    return path


def main(workdir: Path, binding: str) -> dict:
    import os

    import numpy as np
    import pytest
    from fake_tensorrt.install import install_trt
    from typer.testing import CliRunner

    os.environ["EDGESEG_WORKDIR"] = str(workdir / "work")
    patch = pytest.MonkeyPatch()
    install_trt(patch, "8.5.2", binding=binding)
    from edgeseg.cli import app
    from edgeseg.data.synth import SYNTH_CLASSES

    runner = CliRunner()
    done = {}
    onnx_path = tiny_onnx(workdir / "tiny.onnx", len(SYNTH_CLASSES), (32, 48))
    r = runner.invoke(app, ["build", str(onnx_path), "--target", "tensorrt", "--json"])
    assert r.exit_code == 0, (r.output, repr(r.exception))
    engine = json.loads(r.stdout)["engine"]
    done["build"] = Path(engine).name
    r = runner.invoke(
        app, ["run", "--model", engine, "--synthetic", "--frames", "3", "--threads", "1", "--json"]
    )
    assert r.exit_code == 0, (r.output, repr(r.exception))
    done["run"] = json.loads(r.stdout)["frames"]["processed"] if "frames" in json.loads(r.stdout) else True

    from edgeseg.runtime import Segmenter

    frame = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    with Segmenter(engine) as seg:
        done["segmenter"] = list(seg.infer(frame).shape)
    import edgeseg.runtime.ros2node  # noqa: F401 - `edgeseg ros2` runs it under ROS's rclpy

    r = runner.invoke(app, ["ros2", "--help"])
    assert r.exit_code == 0, (r.output, repr(r.exception))
    done["ros2"] = "help"
    patch.undo()
    modules = sorted(m for m in sys.modules if m == "edgeseg" or m.startswith("edgeseg."))
    files = sorted(
        {
            str(Path(sys.modules[m].__file__).resolve())
            for m in modules
            if getattr(sys.modules[m], "__file__", None)
        }
    )
    return {"python": list(sys.version_info[:3]), "done": done, "modules": modules, "files": files}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "pycuda")))
