"""The robot-side runtime: backends, sources, sinks and the streaming pipeline.

Never imports torch (a test enforces it): robots install numpy, OpenCV, onnxruntime and/or TensorRT.
"""

from edgeseg.runtime.backends import BackendOptions
from edgeseg.runtime.launch import open_multistream, open_pipeline, plan_inference
from edgeseg.runtime.multistream import MultiStream
from edgeseg.runtime.pipeline import FrameResult, Pipeline, Reconnect
from edgeseg.runtime.plan import Outputs, RunPlan, View, stream
from edgeseg.runtime.report import RunReport
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.sources import open_source

__all__ = [
    "BackendOptions",
    "FrameResult",
    "MultiStream",
    "Outputs",
    "Pipeline",
    "Reconnect",
    "RunPlan",
    "RunReport",
    "Segmenter",
    "View",
    "open_multistream",
    "open_pipeline",
    "open_source",
    "plan_inference",
    "stream",
]
