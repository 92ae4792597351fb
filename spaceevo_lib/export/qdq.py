"""Rewrite passes that turn an exported fake-quant network into a deployable INT8 QDQ file.

An LSQ+ network exported as it is (:func:`spaceevo_lib.quant.prepare.frozen_for_export`)
carries float weights behind QuantizeLinear, float biases and Linear layers after a Flatten;
onnxruntime would run parts of it in float. :func:`rewrite_learned_qdq` applies the passes
below in order, so that onnxruntime's optimizer fuses every convolution and linear layer into
an integer kernel (QLinearConv & co) with the **learned** scales and zero points.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def rewrite_learned_qdq(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Every pass, in order (in place; returns ``proto``): int8 weight initializers, constants
    as initializers, pooled Linear layers as 1x1 convolutions, int32 biases, no float weights
    of float operators, unused initializers pruned, nodes in topological order."""
    _fold_constant_quantize(proto)
    _constants_as_initializers(proto)
    _pooled_gemm_as_conv(proto)
    _int32_bias(proto)
    _float_weights_of_float_ops(proto)
    _prune_unused(proto)
    _topological(proto)
    return proto


def _constants(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by name."""
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
