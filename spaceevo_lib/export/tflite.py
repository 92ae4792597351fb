"""Keras model -> TFLite flatbuffer (FP32 or full-integer INT8), and a LiteRT runner.

INT8 follows the full-integer recipe of the toolchain notes: ``Optimize.DEFAULT``, a
representative dataset of real images, ``TFLITE_BUILTINS_INT8`` only, int8 input and output
(so the whole graph is integer; nothing silently falls back to float). The runner wraps
``ai_edge_litert.interpreter.Interpreter`` (``tf.lite.Interpreter`` is deprecated); XNNPACK can
be switched off because the SpaceEvo reference measured its phones without it.

TensorFlow and LiteRT are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
import weakref
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import keras

PRECISIONS = ("fp32", "int8")


def _tensorflow():
    """Import TensorFlow safely (see ``keras.load_triton_before_tensorflow``), quietly."""
    from .keras import load_triton_before_tensorflow  # heavy: imports torch
    load_triton_before_tensorflow()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # heavy: tensorflow
    tf.get_logger().setLevel("ERROR")
    return tf


def convert_tflite(model: keras.Model, precision: str,
                   calibration: np.ndarray | None = None) -> bytes:
    """Convert a Keras model with a fixed batch-1 NHWC input to a TFLite flatbuffer.

    ``calibration`` (INT8 only, required there): float32 images ``(N, H, W, C)`` in the
    model's input layout, fed one at a time as the representative dataset.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    tf = _tensorflow()
    graph_def, input_name, shape, outputs = _frozen_graph(model)
    # The TF1 GraphDef converter takes the frozen graph as it is; the TF2 concrete-function
    # converter would freeze it again on every call (3x slower here, same operators and
    # bit-identical outputs: tests compare the two)
    converter = tf.compat.v1.lite.TFLiteConverter(
        graph_def, None, None, input_arrays_with_shape=[(input_name, list(shape))],
        output_arrays=outputs)
    if precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("INT8 conversion needs calibration images (N, H, W, C) float32")
        calib = np.asarray(calibration, dtype=np.float32)
        want = tuple(int(d) for d in model.inputs[0].shape[1:])
        if calib.ndim != 4 or calib.shape[1:] != want:
            raise ValueError(f"calibration must be NHWC (N, {', '.join(map(str, want))}); "
                             f"got {calib.shape}")

        def representative() -> Iterator[list[np.ndarray]]:
            for img in calib:
                yield [img[None]]  # (1, H, W, C)

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    # INT8 warns that the (float) input has no statistics, which the representative data gives
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return bytes(converter.convert())
    finally:
        absl.setLevel(level)


# Keras model -> its traced, frozen batch-1 graph; FP32 and INT8 conversions share one trace.
_FROZEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _frozen_graph(model: keras.Model, public: bool = False
                  ) -> tuple[Any, str, tuple[int, ...], list[str]]:
    """The model's forward pass at batch 1 as a frozen GraphDef (weights as constants), with
    its input name, input shape and output names.

    ``TFLiteConverter.from_keras_model`` writes and re-reads a SavedModel on every call
    (about 15 s for a 30-block subnet here); converting one frozen trace gives the same
    operators in a fraction of the time and is reused by the second precision. The GraphDef is
    taken from TensorFlow's freezing step before it wraps it back into a function
    (``convert_variables_to_constants_v2`` does both; the wrapping was half of this function's
    time for a 32-px subnet and is not needed by the GraphDef converter: the flatbuffers are
    byte-identical, tested). ``public`` uses the public function alone.
    """
    if model in _FROZEN and not public:
        return _FROZEN[model]
    tf = _tensorflow()
    from tensorflow.python.framework import convert_to_constants as c2c  # heavy: tensorflow
    shape = (1, *(int(d) for d in model.inputs[0].shape[1:]))
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    freeze = getattr(c2c, "_replace_variables_by_constants", None)
    data = getattr(c2c, "_FunctionConverterDataInEager", None)
    if public or freeze is None or data is None:  # (a TensorFlow without the two helpers)
        frozen = c2c.convert_variables_to_constants_v2(concrete)
        graph_def, inputs, outputs = frozen.graph.as_graph_def(), frozen.inputs, frozen.outputs
    else:
        graph_def, _ = freeze(data(func=concrete, lower_control_flow=True,
                                   aggressive_inlining=False))
        inputs, outputs = concrete.inputs, concrete.outputs
    out = (graph_def, inputs[0].name.split(":")[0], shape,
           [t.name.split(":")[0] for t in outputs])
    if not public:
        _FROZEN[model] = out
    return out


class TFLiteRunner:
    """One LiteRT interpreter over a flatbuffer: float in/out, (de)quantizing int8 tensors.

    For timing, call ``set_input(x)`` once and time ``invoke()`` alone: it excludes the
    quantization of the input and the copy of the output.
    """

    def __init__(self, model_bytes: bytes, threads: int = 1, xnnpack: bool = True):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # heavy: ai_edge_litert
        resolver = (OpResolverType.AUTO if xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.threads, self.xnnpack = int(threads), bool(xnnpack)
        self.interpreter = Interpreter(model_content=bytes(model_bytes),
                                       num_threads=self.threads,
                                       experimental_op_resolver_type=resolver)
        self.interpreter.allocate_tensors()
        inputs, outputs = self.interpreter.get_input_details(), \
            self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"expected one input and one output; got {len(inputs)} and "
                             f"{len(outputs)}")
        self.input_details: dict[str, Any] = inputs[0]
        self.output_details: dict[str, Any] = outputs[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input_details["shape"])

    @property
    def ops(self) -> list[str]:
        """Operator names of the graph as LiteRT sees it (``DELEGATE`` for XNNPACK parts)."""
        return [d["op_name"] for d in self.interpreter._get_ops_details()]

    def set_input(self, x_nhwc: np.ndarray) -> None:
        """Quantize (if the input is int8) and copy one NHWC float batch into the input."""
        x = np.asarray(x_nhwc, dtype=np.float32)
        if x.shape != self.input_shape:
            raise ValueError(f"input must have shape {self.input_shape}; got {x.shape}")
        d = self.input_details
        if d["dtype"] != np.float32:
            scale, zero = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(d["dtype"])
        self.interpreter.set_tensor(d["index"], x)

    def invoke(self) -> None:
        """Run the graph on the input already set (the part worth timing)."""
        self.interpreter.invoke()

    def output(self) -> np.ndarray:
        """The output as float32 (dequantized when int8)."""
        d = self.output_details
        y = self.interpreter.get_tensor(d["index"])
        if d["dtype"] != np.float32:
            scale, zero = d["quantization"]
            y = (y.astype(np.float32) - zero) * np.float32(scale)
        return y.astype(np.float32, copy=False)

    def run(self, x_nhwc: np.ndarray) -> np.ndarray:
        """Float NHWC batch-1 input -> float output (NHWC for 4-D, (1, features) for 2-D)."""
        self.set_input(x_nhwc)
        self.invoke()
        return self.output()
