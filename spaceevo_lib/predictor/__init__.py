"""Latency predictors built from this host's measurements (the predictor chapter).

``load_predictor("ort-vnni")`` gives the predictor the chapter saved for a device;
``predictor.predict(subnets, "int8", space=...)`` prices a batch of subnet descriptions (the
search API). Pieces: :mod:`.units` (subnets as blocks, analytic kernel costs),
:mod:`.model` (regressors, composition, save/load by refitting), :mod:`.sampling` (random and
adaptive sampling, measurement jobs), :mod:`.fusion` (which operators each runtime fuses),
:mod:`.experiment` (the chapter's procedure), :mod:`.scale` (the training scale),
:mod:`.summary` (tables and summary records).
"""

from __future__ import annotations

from pathlib import Path

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


def predictor_name(device: str, hyperspace: str) -> str:
    """The file stem a predictor is saved under in the predictor chapter's run folder."""
    return f"predictor-{device}@{hyperspace}"


def load_predictor(device: str, scale: str = "train", profile: str = "default",
                   root: Path | None = None) -> LatencyPredictor:
    """The predictor the predictor chapter saved for ``device`` at ``scale`` (``train``: the
    training-scale hyperspace every training chapter uses; ``paper``: 224 px), for ``profile``.
    It is refitted from its training tables, so it loads with any scikit-learn."""
    from ..store import Run
    hs = target_hyperspace(device, scale)
    return LatencyPredictor.load(Run("predictor", profile, root).path, predictor_name(device, hs))


__all__ = ["HEAD", "HYPERSPACE_OF", "PRECISIONS", "predictor_name", "REGRESSORS", "SCALES", "LatencyPredictor",
           "Unit", "UnitRegressor", "best_family", "build_unit", "compare_regressors",
           "error_metrics", "load_predictor", "scale_subnet", "subnet_mflops", "subnet_units",
           "target_hyperspace", "unit_cost"]
