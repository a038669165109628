"""The robot-side runtime: backends, sources, sinks and the streaming pipeline.

Never imports torch (a test enforces it): robots install numpy, OpenCV, onnxruntime and/or TensorRT.
"""

from edgeseg.runtime.segmenter import Segmenter

__all__ = ["Segmenter"]
