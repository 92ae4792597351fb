"""INT8 vs FP32 latency on real runtimes: the benchmark protocol, devices and records.

``measure(get_device("ort-vnni"), module, (1, 3, 224, 224), images, Protocol(), workdir,
meta)`` returns one flat record (schema in :mod:`spaceevo_lib.latency.devices`). Importing
this package does not import onnxruntime or TensorFlow.

The chapter's own layer: :func:`zoo_items` (what to time), :func:`measure_zoo` (time it on
several devices, checkpointed in the store) and the tables and findings of
:mod:`spaceevo_lib.latency.analysis`. :func:`run_jobs` (:mod:`.jobs`) is the one measurement path:
modules converted in parallel worker processes, then timed by interleaved visits on an idle CPU
(:mod:`.protocol`).
"""

from .devices import (RECORD_COLUMNS, CompiledPair, Device, RuntimeUnavailable,
                      check_input_shape, get_device, list_devices, measure, register)
from .protocol import (PROTOCOL_VERSION, STATS, Protocol, ProtocolMismatch, latency_column,
                       measure_pair, summarize_visits, time_networks, time_runner)
from .analysis import (block_speedups, conv1x1_sweep, findings, model_comparison,  # noqa: E402
                       model_table, operator_speedups, quality_table, recorded_values,
                       release_comparison, summary_records)
from .bench import calibration_images, device_table, measure_zoo, zoo_jobs  # noqa: E402
from .jobs import Job, load_records, run_jobs  # noqa: E402
from .zoo import ZooItem, zoo_items, zoo_sizes  # noqa: E402

__all__ = [
    "RECORD_COLUMNS", "CompiledPair", "Device", "RuntimeUnavailable", "check_input_shape",
    "get_device", "list_devices", "measure", "register", "PROTOCOL_VERSION", "STATS",
    "Protocol", "ProtocolMismatch", "latency_column", "measure_pair", "summarize_visits",
    "time_networks", "time_runner", "block_speedups", "conv1x1_sweep", "findings", "model_comparison", "model_table",
    "operator_speedups", "quality_table", "recorded_values", "release_comparison", "summary_records", "calibration_images",
    "device_table", "measure_zoo", "zoo_jobs", "ZooItem", "zoo_items", "zoo_sizes", "Job",
    "load_records", "run_jobs",
]
