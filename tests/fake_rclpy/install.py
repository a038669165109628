"""Put the fake rclpy and the message packages in `sys.modules` for one test (pytest's monkeypatch),
where the node's lazy imports (`import rclpy`, `from sensor_msgs.msg import Image`) find them."""

from __future__ import annotations

import sys
import types

import pytest

from fake_rclpy import messages
from fake_rclpy.rclpy_fake import FakeGraph, build


def install_rclpy(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeGraph, types.ModuleType]:
    graph = FakeGraph()
    modules = {**build(graph), **messages.modules()}
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return graph, modules["rclpy"]


def hide_rclpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without a sourced ROS 2: `import rclpy` fails."""
    for name in ("rclpy", "rclpy.node", "rclpy.qos", "rclpy.executors", "rclpy.exceptions", "rclpy.signals"):
        monkeypatch.setitem(sys.modules, name, None)
