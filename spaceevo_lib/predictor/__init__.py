"""Latency predictors built from this host's measurements.

``predictor.predict(subnets, "int8", space=...)`` prices a batch of subnet descriptions (the
search API); the predictor chapter's saved predictors are read with
:func:`spaceevo_lib.chapters.predictor.load_predictor`. Pieces: :mod:`.units` (subnets as
blocks, analytic kernel costs), :mod:`.model` (regressors, composition, save/load by
refitting), :mod:`.sampling` (random and adaptive sampling, measurement jobs), :mod:`.fusion`
(which operators each runtime fuses), :mod:`.build` (the recipe: sample, measure, fit,
validate), :mod:`.validation` (against held-out networks and the ground truth's
repeatability). Reusable machinery only: the chapter's plan, tables and records are
:mod:`spaceevo_lib.chapters.predictor`.
"""

from __future__ import annotations

from .model import (PRECISIONS, REGRESSORS, LatencyPredictor, UnitRegressor, best_family,
                    compare_regressors, error_metrics)
from .units import HEAD, Unit, build_unit, scale_subnet, subnet_mflops, subnet_units, unit_cost

#: The paper's device-hyperspace pairing (onnxw was designed for the VNNI CPU, mobilew for the
#: Pixel 4), at each scale the chapter offers: the paper's 224 px and the training scale.
HYPERSPACE_OF = {"ort-vnni": "onnxw", "tflite": "mobilew", "tflite-noxnn": "mobilew"}
SCALES = {"paper": "", "train": "-train"}


def target_hyperspace(device: str, scale: str) -> str:
    """The hyperspace a device's predictor covers at ``scale`` (e.g. ort-vnni, train ->
    onnxw-train)."""
    if device not in HYPERSPACE_OF:
        raise KeyError(f"no hyperspace paired with device {device!r}; known: "
                       f"{', '.join(HYPERSPACE_OF)}")
    if scale not in SCALES:
        raise KeyError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    return HYPERSPACE_OF[device] + SCALES[scale]


__all__ = ["HEAD", "HYPERSPACE_OF", "PRECISIONS", "REGRESSORS", "SCALES", "LatencyPredictor",
           "Unit", "UnitRegressor", "best_family", "build_unit", "compare_regressors",
           "error_metrics", "scale_subnet", "subnet_mflops", "subnet_units",
           "target_hyperspace", "unit_cost"]
