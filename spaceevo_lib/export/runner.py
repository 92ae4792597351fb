"""onnxruntime sessions as the benchmark protocol runs them, and what they really execute."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


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
