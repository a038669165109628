"""Calibration data and INT8 quantization (TensorRT Q/DQ form and ONNX Runtime CPU form).

    data       calibration images: synth / dataset folder / video / glob, stratified, runtime preprocessing
    stats      activation ranges from onnxruntime's calibrators, computed once and cached
    quantize   the two INT8 artifacts from the same ranges (TensorRT Q/DQ, ORT CPU U8S8)
    qdq_rules  TensorRT's Q/DQ placement rules: passes and a checker
    trt_cache  ranges as a TensorRT calibration cache (for ModelOpt)
    gate       FP32 vs INT8 mIoU on held-out data, sensitivity ranking, layer-by-layer fallback

`edgeseg.build` orchestrates a build (FP16, INT8, TensorRT) from these parts.

Submodules import onnxruntime/onnx; nothing here is imported by `edgeseg.runtime`.
"""
