"""Calibration data and INT8 quantization (TensorRT Q/DQ form and ONNX Runtime CPU form)."""
