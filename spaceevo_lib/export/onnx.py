"""PyTorch -> ONNX FP32 -> static INT8 ONNX, and a timing-friendly onnxruntime runner.

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
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)
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


def _constants(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by name."""
    from onnx import numpy_helper
    out = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for n in proto.graph.node:  # in graph order: an Identity of a constant is that constant
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type == "Identity" and n.input[0] in out:
            out[n.output[0]] = out[n.input[0]]
    return out


def _qparams(node: onnx.NodeProto, consts: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (De)QuantizeLinear node's constant input, scale and zero point, the per-axis ones
    shaped to broadcast against the input."""
    x, s, zp = (consts[i] for i in node.input)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if s.ndim == 1 and x.ndim > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        s, zp = s.reshape(shape), zp.reshape(shape)
    return x, s, zp


def _fold_constant_quantize(proto: onnx.ModelProto) -> int:
    """QuantizeLinear of an initializer -> the quantized initializer itself (int8 weights
    stored as such, so that onnxruntime sees DequantizeLinear(int8) -> Conv). Rounds half to
    even, as QuantizeLinear does."""
    from onnx import numpy_helper
    consts = _constants(proto)
    folded = 0
    for node in list(proto.graph.node):
        if node.op_type != "QuantizeLinear" or not all(i in consts for i in node.input):
            continue
        x, s, zp = _qparams(node, consts)
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(x / s) + zp.astype(np.int64), info.min, info.max).astype(zp.dtype)
        proto.graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        proto.graph.node.remove(node)
        folded += 1
    return folded


def _int32_bias(proto: onnx.ModelProto) -> int:
    """A Conv or Gemm whose input and weight come from DequantizeLinear gets its float bias
    as int32 at scale s_x * s_w behind a DequantizeLinear (a float bias blocks onnxruntime's
    QLinearConv fusion; training-notes section 2)."""
    from onnx import numpy_helper
    consts = _constants(proto)
    producer = {o: n for n in proto.graph.node for o in n.output}
    done = 0
    for node in list(proto.graph.node):
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 \
                or node.input[2] not in consts:
            continue
        dx, dw = producer.get(node.input[0]), producer.get(node.input[1])
        if not (dx is not None and dw is not None and dx.op_type == dw.op_type ==
                "DequantizeLinear"):
            continue
        s_x = consts[dx.input[1]].astype(np.float64)
        s_w = consts[dw.input[1]].astype(np.float64)
        b = consts[node.input[2]].astype(np.float64)
        scale = (s_x * s_w * np.ones_like(b)).astype(np.float32)
        name = node.input[2]
        q = np.clip(np.rint(b / scale), -2**31, 2**31 - 1).astype(np.int32)
        proto.graph.initializer.extend([
            numpy_helper.from_array(q, f"{name}_int32"),
            numpy_helper.from_array(scale, f"{name}_scale"),
            numpy_helper.from_array(np.zeros_like(q), f"{name}_zero_point")])
        proto.graph.node.append(helper.make_node(
            "DequantizeLinear", [f"{name}_int32", f"{name}_scale", f"{name}_zero_point"],
            [f"{name}_dq"], name=f"{name}_DequantizeLinear", axis=0))
        node.input[2] = f"{name}_dq"
        done += 1
    return done


def _constants_as_initializers(proto: onnx.ModelProto) -> None:
    """Constant nodes -> initializers (one per name), so that every scale and zero point is a
    named initializer of the file."""
    from onnx import numpy_helper
    for n in [n for n in proto.graph.node if n.op_type == "Constant"]:
        if n.attribute and n.attribute[0].name == "value":
            proto.graph.initializer.append(numpy_helper.from_array(
                numpy_helper.to_array(n.attribute[0].t), n.output[0]))
            proto.graph.node.remove(n)


_POINTWISE = {"QuantizeLinear", "DequantizeLinear", "Relu", "Clip", "HardSigmoid", "Sigmoid",
              "HardSwish", "Mul", "Add", "Identity", "Dropout"}


def _pooled_gemm_as_conv(proto: onnx.ModelProto) -> int:
    """``Flatten`` of a (N, C, 1, 1) pooled tensor followed by Linear layers -> 1x1 ``Conv``
    layers on the 4-D tensor and one ``Flatten`` at the output. The same arithmetic, but a
    Linear after a Flatten has a float input (the Flatten sits between DequantizeLinear and
    Gemm) and onnxruntime runs it as a float Gemm; as a 1x1 Conv fed by DequantizeLinear it
    becomes a QLinearConv. Only chains of point-wise ops and Gemms (transB=1, alpha=beta=1) up
    to the graph output are rewritten; anything else leaves the graph as it was."""
    from onnx import numpy_helper
    shapes = onnx.shape_inference.infer_shapes(proto)
    dims = {v.name: [d.dim_value if d.HasField("dim_value") else None
                     for d in v.type.tensor_type.shape.dim]
            for v in list(shapes.graph.value_info) + list(shapes.graph.input)}
    consumers: dict[str, list] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in proto.graph.output}
    inits = {i.name: i for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    done = 0
    for flat in [n for n in proto.graph.node if n.op_type == "Flatten"]:
        shape = dims.get(flat.input[0])
        if shape is None or len(shape) != 4 or shape[2:] != [1, 1]:
            continue
        chain, gemms, ends, todo, ok = [], [], [], [flat.output[0]], True
        while todo and ok:
            t = todo.pop()
            if t in outputs:
                ends.append(t)
            for n in consumers.get(t, []):
                if n in chain:
                    continue
                if n.op_type == "Gemm":
                    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
                    ok = (n.input[0] == t and attrs.get("transB", 0) == 1
                          and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
                          and attrs.get("transA", 0) == 0)
                    gemms.append(n)
                elif n.op_type not in _POINTWISE:
                    ok = False
                chain.append(n)
                todo.extend(n.output)
        if not ok or not gemms or not ends:
            continue
        for g in gemms:  # weight: an initializer, directly or behind a DequantizeLinear
            w_name = g.input[1]
            dq = producer.get(w_name)
            if dq is not None and dq.op_type == "DequantizeLinear":
                w_name = dq.input[0]
            if w_name not in inits:
                ok = False
        if not ok:
            continue
        for g in gemms:
            w_name = g.input[1]
            dq = producer.get(w_name)
            if dq is not None and dq.op_type == "DequantizeLinear":
                w_name = dq.input[0]
            w = numpy_helper.to_array(inits[w_name])
            inits[w_name].CopyFrom(numpy_helper.from_array(w.reshape(*w.shape, 1, 1), w_name))
            g.op_type = "Conv"
            del g.attribute[:]
        for n in chain:  # Dropout etc. keep their inputs; only Flatten goes
            n.input[:] = [flat.input[0] if i == flat.output[0] else i for i in n.input]
        for end in ends:
            src = producer[end]
            src.output[:] = [f"{end}_nchw" if o == end else o for o in src.output]
            for n in consumers.get(end, []):
                n.input[:] = [f"{end}_nchw" if i == end else i for i in n.input]
            proto.graph.node.append(helper.make_node("Flatten", [f"{end}_nchw"], [end],
                                                     name=f"{end}_flatten", axis=1))
        proto.graph.node.remove(flat)
        done += 1
    if done:
        del proto.graph.value_info[:]
    return done


def _float_weights_of_float_ops(proto: onnx.ModelProto) -> int:
    """A Conv or Gemm whose *input* is float (no DequantizeLinear before it, e.g. a Linear after
    a Flatten) stays a float kernel in onnxruntime, which would dequantize its int8 weight on
    every run: store that weight dequantized instead (the same values, on the int8 grid)."""
    from onnx import numpy_helper
    consts = _constants(proto)
    producer = {o: n for n in proto.graph.node for o in n.output}
    done = 0
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2:
            continue
        dx, dw = producer.get(node.input[0]), producer.get(node.input[1])
        if (dx is not None and dx.op_type == "DequantizeLinear") or dw is None \
                or dw.op_type != "DequantizeLinear" or not all(i in consts for i in dw.input):
            continue
        q, sc, zp = _qparams(dw, consts)
        w = ((q.astype(np.float32) - zp.astype(np.float32)) * sc).astype(np.float32)
        name = f"{node.input[1]}_float"
        proto.graph.initializer.append(numpy_helper.from_array(w, name))
        node.input[1] = name
        done += 1
    return done


def _prune_unused(proto: onnx.ModelProto) -> None:
    """Drop nodes, initializers and constants nothing reads any more."""
    outputs = {o.name for o in proto.graph.output}
    while True:
        used = {i for n in proto.graph.node for i in n.input} | outputs
        dead = [n for n in proto.graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            proto.graph.node.remove(n)
    keep = [i for i in proto.graph.initializer if i.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)


def _topological(proto: onnx.ModelProto) -> None:
    """Reorder nodes so that every input is produced before use (added DQ nodes last)."""
    ready = {i.name for i in proto.graph.initializer} | {i.name for i in proto.graph.input}
    nodes, ordered = list(proto.graph.node), []
    while nodes:
        rest = []
        for n in nodes:
            if all(i in ready or not i for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(nodes):
            raise ValueError("ONNX graph has a cycle or a missing input")
        nodes = rest
    del proto.graph.node[:]
    proto.graph.node.extend(ordered)


def export_qdq(qmodel: torch.nn.Module, input_shape_nchw: Sequence[int], path: Path | str,
               metadata: dict[str, str] | None = None, opset: int = 17) -> Path:
    """The deployed INT8 file of an LSQ+ network (:func:`spaceevo_lib.quant.quantize_model`)
    with its **learned** scales and zero points: QDQ format, int8 weights per channel, int32
    biases, uint8 activations; onnxruntime's optimizer fuses it into QLinearConv & co.
    ``metadata`` (e.g. preprocessing) is stored as the file's metadata_props."""
    from ..quant.prepare import frozen_for_export
    path = Path(path)
    frozen = frozen_for_export(qmodel)
    with atomic_path(path) as tmp:
        export_onnx(frozen, input_shape_nchw, tmp, opset=opset)
        proto = onnx.load(str(tmp))
        _fold_constant_quantize(proto)
        _constants_as_initializers(proto)
        _pooled_gemm_as_conv(proto)
        _int32_bias(proto)
        _float_weights_of_float_ops(proto)
        _prune_unused(proto)
        _topological(proto)
        for k, v in (metadata or {}).items():
            proto.metadata_props.add(key=str(k), value=str(v))
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return path


def optimized_ops(path: Path | str) -> dict[str, int]:
    """Operator histogram of the graph onnxruntime actually runs (``ORT_ENABLE_ALL``), e.g.
    to count the QLinearConv a QDQ file fused into."""
    with tempfile.TemporaryDirectory(prefix="spaceevo-opt-") as tmpdir:
        out = Path(tmpdir) / "optimized.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(out)
        so.log_severity_level = 3  # its note that the saved graph is host-specific is expected
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return graph_ops(out)


def graph_ops(path: Path | str) -> dict[str, int]:
    """Operator histogram of an ONNX file, e.g. to check that an INT8 graph is quantized."""
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


class OrtRunner:
    """One onnxruntime CPU session with the benchmark protocol's settings.

    ``set_input`` binds the input once; ``invoke`` then runs the session with no Python-side
    conversion, so a timing loop around ``invoke`` measures the runtime only.
    """

    runtime = "onnxruntime"

    def __init__(self, path: Path | str, threads: int = 1):
        if threads < 1:
            raise ValueError(f"threads must be >= 1; got {threads}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path, self.threads = Path(path), threads
        self.session = ort.InferenceSession(str(path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.output_name = self.session.get_outputs()[0].name
        self._binding = self.session.io_binding()
        self._x: np.ndarray | None = None

    def set_input(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if list(x.shape) != list(self.input.shape):
            raise ValueError(f"{self.path.name} expects input {self.input.shape}; got {x.shape}")
        self._x = x  # keep the buffer alive: the binding points at it
        self._binding.clear_binding_inputs()
        self._binding.clear_binding_outputs()
        self._binding.bind_cpu_input(self.input.name, x)
        self._binding.bind_output(self.output_name, "cpu")

    def invoke(self) -> None:
        if self._x is None:
            raise RuntimeError("call set_input before invoke")
        self.session.run_with_iobinding(self._binding)

    def output(self) -> np.ndarray:
        return self._binding.copy_outputs_to_cpu()[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        self.set_input(x)
        self.invoke()
        return self.output()

