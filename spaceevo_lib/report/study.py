"""The study's own setup beside the paper's: what this host is and what stands in for what."""

from __future__ import annotations

import pandas as pd

from ..data.paper import paper_reference
from ..host import cpu_info, gpu_available, memory_gib

_OURS = {
    "dataset": "Imagenette (10 ImageNet classes) at 32 and 64 px: {train} train / {test} test "
               "images in the loaded file",
    "cpu_device": "this host's CPU ({cpu}, VNNI {vnni}), onnxruntime static INT8, 1 thread",
    "mobile_device": "TFLite / LiteRT INT8 on this x86 CPU, XNNPACK on and off: a stand-in, "
                     "not a phone",
    "supernet_training": "scaled-down epochs on {cores} CPU cores (no GPU: {gpu}); the paper "
                         "profile documents the full recipe with torchrun",
    "block_kd": "the same recipe, scaled down, with a smaller torchvision teacher",
    "latency_predictor": "our own scikit-learn predictors, fitted on this host's measurements",
}


def substitutions(n_train: int, n_test: int):
    """Paper setting vs this study's, one row per aspect, with this host's facts filled in."""
    cpu = cpu_info()
    facts = {"train": n_train, "test": n_test, "cpu": cpu["cpu_model"],
             "vnni": "present" if cpu["vnni"] else "absent", "cores": cpu["logical_cores"],
             "gpu": "present" if gpu_available() else "none"}
    rows = [(key, spec["paper"], _OURS[key].format(**facts))
            for key, spec in paper_reference()["setup"].items()]
    return pd.DataFrame(rows, columns=["aspect", "paper", "this study"])


def host_table():
    """This host as the book reports it beside every measurement."""
    cpu = cpu_info()
    rows = [("CPU", cpu["cpu_model"]), ("logical cores", cpu["logical_cores"]),
            ("memory (GiB)", memory_gib()), ("VNNI", "yes" if cpu["vnni"] else "no"),
            ("INT8-relevant ISA flags", " ".join(cpu["int8_flags"]) or "none"),
            ("GPU", "yes" if gpu_available() else "no")]
    return pd.DataFrame(rows, columns=["property", "value"]).astype({"value": str})
