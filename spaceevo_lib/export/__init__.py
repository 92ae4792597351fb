"""Exporters from PyTorch to the benchmark runtimes: ONNX (onnxruntime) and Keras/TFLite."""
