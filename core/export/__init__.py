"""Export and fast paths: ONNX export and int8 quantization."""
