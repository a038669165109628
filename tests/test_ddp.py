"""DDP through torchrun on CPU (gloo, 2 processes): ranks agree, only rank 0 writes checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import json, os, sys
import torch
sys.path.insert(0, {tests!r})
import test_train as T

torch.set_num_threads(1)
T._register_tiny()
data = T.Scenes(6)
result = T.train(T._cfg(epochs=2, batch_size=2), train_set=data, val_set=data)
rank = int(os.environ["RANK"])
torch.save(result.model.state_dict(), os.path.join({out!r}, f"rank{{rank}}.pt"))
with open(os.path.join({out!r}, f"rank{{rank}}.json"), "w") as fh:
    json.dump({{"world": int(os.environ["WORLD_SIZE"]), "is_main": result.is_main,
               "run_dir": str(result.run_dir), "miou": result.metrics.miou}}, fh)
"""


def test_ddp_two_cpu_processes(tmp_path, _isolated_workdir):
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(TESTS), out=str(out))))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]

    infos = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in infos] == [2, 2] and [i["is_main"] for i in infos] == [True, False]
    assert infos[0]["run_dir"] == infos[1]["run_dir"]  # rank 0 chose it and broadcast it
    assert infos[0]["miou"] == infos[1]["miou"]  # validation confusion matrices were all-reduced

    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0, msg=k)

    runs = list((_isolated_workdir / "train" / "tiny_testnet").iterdir())
    assert len(runs) == 1, runs
    assert sorted(p.name for p in runs[0].iterdir()) == ["best.pt", "history.json", "last.pt"]


def _env():
    import os

    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env
