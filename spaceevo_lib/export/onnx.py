"""PyTorch -> ONNX FP32 -> static INT8 ONNX (onnxruntime's quantization tool).

This is the paper's x86 protocol (paper-notes 9.4): fixed batch 1, static post-training
quantization with per-channel INT8 weights, one intra-op thread, sequential execution,
``ORT_ENABLE_ALL``. Two details matter for INT8 speed on this toolchain (toolchain-notes):

* the legacy exporter (``dynamo=False``) emits ``GlobalAveragePool`` for
  ``AdaptiveAvgPool2d(1)``; a spatial ``ReduceMean`` would stay FP32 after static
  quantization (extra DequantizeLinear/QuantizeLinear pairs), so ``export_onnx`` rewrites any
  such node into ``GlobalAveragePool`` (+ ``Flatten`` when the mean dropped the dims);
* the quantized format (QOperator vs QDQ, unsigned vs signed activations) is recorded with
  every latency, because it changes which kernels run.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from .._io import atomic_path

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "output"

# name -> (format, activation type, weight type)
QUANT_FORMATS: dict[str, tuple[QuantFormat, QuantType, QuantType]] = {
    # the SpaceEvo reference (onnx_tools): QLinear* operators, uint8 activations
    "qop-u8s8": (QuantFormat.QOperator, QuantType.QUInt8, QuantType.QInt8),
    # onnxruntime's recommended default on x86: Q/DQ pairs fused by the optimizer, int8 both
    "qdq-s8s8": (QuantFormat.QDQ, QuantType.QInt8, QuantType.QInt8),
}
# The paper's protocol, and never slower on this toolchain (numbers in quantize_onnx).
DEFAULT_FORMAT = "qop-u8s8"


def _check_shape(input_shape_nchw: Sequence[int]) -> tuple[int, int, int, int]:
    shape = tuple(int(d) for d in input_shape_nchw)
    if len(shape) != 4 or any(d <= 0 for d in shape):
        raise ValueError(f"input shape must be 4 positive ints (N, C, H, W); got {shape}")
    if shape[0] != 1:
        raise ValueError(f"latency models use a fixed batch of 1; got input shape {shape}")
    return shape  # type: ignore[return-value]


def export_onnx(module: torch.nn.Module, input_shape_nchw: Sequence[int], path: Path | str,
                opset: int = 17) -> Path:
    """Export an eval-mode copy of ``module`` to one ONNX file with batch 1 fixed.

    The caller's module is left untouched (mode, weights). The file appears only when the
    export and the pooling check succeeded.
    """
    shape = _check_shape(input_shape_nchw)
    model = copy.deepcopy(module).eval()
    x = torch.zeros(shape)
    path = Path(path)
    with atomic_path(path) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # the legacy exporter is chosen on purpose (GlobalAveragePool, one file)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (x,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              do_constant_folding=True, external_data=False)
        proto = onnx.load(str(tmp))
        if _fix_spatial_reduce_mean(proto):
            onnx.save(proto, str(tmp))
        onnx.checker.check_model(proto)
    return path


def _reduce_axes(node: onnx.NodeProto, inits: dict[str, np.ndarray]) -> list[int] | None:
    for a in node.attribute:
        if a.name == "axes":
            return list(a.ints)
    if len(node.input) > 1 and node.input[1] in inits:  # opset >= 18: axes is an input
        return [int(v) for v in inits[node.input[1]].ravel()]
    return None


def _fix_spatial_reduce_mean(proto: onnx.ModelProto) -> int:
    """Rewrite ReduceMean over H and W of a 4-D tensor as GlobalAveragePool; return the count.

    Static quantization has no INT8 ReduceMean, so such a node costs a dequantize/quantize
    round trip in every INT8 model. Other ReduceMeans are left alone, with a warning.
    """
    inferred = onnx.shape_inference.infer_shapes(proto)
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim)
             for vi in [*inferred.graph.value_info, *inferred.graph.input]}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for n in proto.graph.node:  # opset >= 18 exports the axes as a Constant node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            inits[n.output[0]] = onnx.numpy_helper.to_array(n.attribute[0].t)
    graph, fixed = proto.graph, 0
    for i, node in enumerate(list(graph.node)):
        if node.op_type != "ReduceMean":
            continue
        axes = _reduce_axes(node, inits)
        rank = ranks.get(node.input[0])
        if rank != 4 or axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            log.warning("ReduceMean %s (axes %s, rank %s) left in the graph: it will run in "
                        "FP32 in the INT8 model", node.name, axes, rank)
            continue
        keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        out = node.output[0]
        if keep:
            new = [helper.make_node("GlobalAveragePool", [node.input[0]], [out],
                                    name=f"{node.name}_gap")]
        else:
            mid = f"{out}_gap4d"
            new = [helper.make_node("GlobalAveragePool", [node.input[0]], [mid],
                                    name=f"{node.name}_gap"),
                   helper.make_node("Flatten", [mid], [out], name=f"{node.name}_flat", axis=1)]
        idx = list(graph.node).index(node)
        graph.node.remove(node)
        for j, n in enumerate(new):
            graph.node.insert(idx + j, n)
        fixed += 1
        log.info("replaced spatial ReduceMean %s (#%d) by GlobalAveragePool", node.name, i)
    if fixed:  # drop Constant nodes (the old axes) that nothing reads any more
        used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
        for n in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
            graph.node.remove(n)
    return fixed


class _ImageReader(CalibrationDataReader):
    """Feeds calibration images one at a time (the models have batch 1 fixed)."""

    def __init__(self, input_name: str, images: np.ndarray):
        self.input_name, self.images, self.i = input_name, images, 0

    def get_next(self) -> dict | None:
        if self.i >= len(self.images):
            return None
        self.i += 1
        return {self.input_name: self.images[self.i - 1:self.i]}

    def rewind(self) -> None:
        self.i = 0


def quantize_onnx(fp32_path: Path | str, int8_path: Path | str, calibration: np.ndarray,
                  fmt: str = DEFAULT_FORMAT, per_channel: bool = True) -> Path:
    """Static INT8 quantization (MinMax calibration on real images) of an FP32 ONNX model.

    Formats: ``"qop-u8s8"`` (QOperator, uint8 activations, int8 weights: the SpaceEvo
    reference's protocol) and ``"qdq-s8s8"`` (QDQ, int8 both: onnxruntime's recommended x86
    default). The default is ``"qop-u8s8"``: it is the paper's protocol *and* never slower
    here. Measured on this AVX512-VNNI host (onnxruntime 1.31, 1 thread, batch 1, 224 px,
    INT8 median ms over 5x30 runs, three repeats, order alternated; qop / qdq):

    * plain 3x3-conv net 2.38-2.43 / 2.34-2.45, conv1x1-heavy net 2.75-2.91 / 2.79-2.93:
      the same (both ~3.2x faster than FP32);
    * torchvision mobilenet_v2 3.51-3.63 / 5.94-6.03 (speedup 2.1-2.2x / 1.27x);
    * mobilenet_v3_small 1.89-2.18 / 5.80-6.40 (0.94-0.98x / 0.30-0.32x).

    With QDQ-s8s8, onnxruntime's optimizer leaves 15 of mobilenet_v2's 52 convolutions and
    all its residual Adds in FP32 between DequantizeLinear/QuantizeLinear pairs; QOperator
    runs all of them as QLinearConv/QLinearAdd. ``reduce_range`` stays off: it only matters
    for uint8 x int8 on x86 *without* VNNI.
    """
    if fmt not in QUANT_FORMATS:
        raise ValueError(f"unknown quantization format {fmt!r}; allowed: {sorted(QUANT_FORMATS)}")
    qformat, act, weight = QUANT_FORMATS[fmt]
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    images = np.ascontiguousarray(calibration, dtype=np.float32)
    sess = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    expected = tuple(inp.shape[1:])
    if images.ndim != 4 or len(images) == 0 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"calibration must be (N>0, {', '.join(map(str, expected))}) float32 "
                         f"NCHW images for {fp32_path.name}; got {images.shape}")
    with tempfile.TemporaryDirectory(prefix="spaceevo-quant-") as tmpdir:
        pre = Path(tmpdir) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre))
        with atomic_path(int8_path) as tmp:
            quantize_static(str(pre), str(tmp), _ImageReader(inp.name, images),
                            quant_format=qformat, per_channel=per_channel,
                            activation_type=act, weight_type=weight,
                            calibration_providers=["CPUExecutionProvider"])
    return int8_path
