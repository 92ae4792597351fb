"""INT8 vs FP32 latency on real runtimes: devices, the timing protocol, records, measurement jobs.

:func:`run_jobs` (:mod:`.jobs`) is the one measurement path: modules converted in parallel
worker processes, then timed by interleaved visits on an idle CPU (:mod:`.protocol`); each
measurement becomes one record (:mod:`.records`). :mod:`.devices` registers the runtimes
(``ort-vnni``, ``tflite``, ``tflite-noxnn``); :mod:`.zoo` holds the operators, blocks and models
the latency chapter times; :mod:`.memory` releases converter state in long-lived workers.
Reusable machinery only: the latency chapter's tables and findings are
:mod:`spaceevo_lib.chapters.latency`. Importing this package does not import onnxruntime or
TensorFlow.
"""

from .devices import (CompiledPair, Device, RuntimeUnavailable, check_input_shape, device_table,
                      get_device, list_devices, register)
from .jobs import Job, calibration_inputs, job_builder, load_records, run_jobs
from .protocol import (PROTOCOL_VERSION, STATS, Protocol, ProtocolMismatch, latency_column,
                       measure_pair, summarize_visits, time_networks, time_runner)
from .records import RECORD_COLUMNS, recorded_values
from .zoo import ZooItem, measure_zoo, zoo_items, zoo_jobs, zoo_sizes

__all__ = [
    "RECORD_COLUMNS", "CompiledPair", "Device", "RuntimeUnavailable", "check_input_shape",
    "device_table", "get_device", "list_devices", "register", "PROTOCOL_VERSION", "STATS",
    "Protocol", "ProtocolMismatch", "latency_column", "measure_pair", "summarize_visits",
    "time_networks", "time_runner", "Job", "calibration_inputs", "job_builder", "load_records",
    "run_jobs", "recorded_values", "ZooItem", "measure_zoo", "zoo_items", "zoo_jobs", "zoo_sizes",
]
