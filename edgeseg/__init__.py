"""edgeseg: semantic segmentation from PyTorch to the edge.

This top-level package stays import-light (no torch, no onnx) so that the robot-side runtime and
`edgeseg --help` start fast; heavy modules are imported where they are used.
"""

from edgeseg._version import __version__
from edgeseg.errors import EdgesegError

__all__ = ["EdgesegError", "__version__"]
