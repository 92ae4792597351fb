"""Exporters from PyTorch to the benchmark runtimes, and the deployed-file format.

:mod:`.onnx` (FP32 export, onnxruntime static INT8), :mod:`.qdq` (the rewrite passes that make
a learned-scale QDQ file run as integer kernels), :mod:`.runner` (onnxruntime sessions with the
benchmark protocol's settings, and what they execute), :mod:`.keras` and :mod:`.tflite` (the
Keras mirror of a PyTorch network, TFLite conversion and runner), :mod:`.metadata` (the
preprocessing every deployed file carries). Reusable machinery only: nothing here knows a
chapter, and nothing imports ``quant`` (which builds on this package).
"""
