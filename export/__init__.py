"""PyTorch -> ONNX export, precision transforms on ONNX, and TensorRT engine building."""
