"""Peak memory in `edgeseg bench` is the measuring child's own, not inherited from a big parent."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys

import numpy as np
import pytest

from edgeseg import bench


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss inheritance is Linux behaviour")
def test_spawned_child_peak_rss_excludes_the_parent():
    ballast = np.ones(256 * 2**20 // 8)  # 256 MB resident in this (parent) process
    ballast[::512] = 2.0
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        child_mb = pool.submit(bench.peak_rss_mb).result()
    assert 5 < child_mb < 200, child_mb  # a fresh interpreter with numpy, far below the parent's 256 MB
    assert bench.peak_rss_mb() > 256  # and the parent's own figure does count its ballast
    del ballast
