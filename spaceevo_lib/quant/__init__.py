"""Quantization-aware training: LSQ+ fake quantizers whose learned scales deploy as they are
(:mod:`.lsq`), their placement on any traced network (:mod:`.prepare`), and the deployed INT8
files with their preprocessing, evaluated and timed from the files (:mod:`.deploy`). LSQ+ on
elastic (weight-sharing) networks is :mod:`spaceevo_lib.supernet.quantized`."""

from .lsq import (ACT_QMAX, EPS, WEIGHT_QMAX, ActQuantizer, NotInitialisedError, WeightQuantizer,
                  grad_scale)
from .prepare import (QConv2d, QLinear, act_quantizers, fold_bn, frozen_for_export, quantize_model,
                      weight_quantizers)

__all__ = ["ACT_QMAX", "EPS", "WEIGHT_QMAX", "ActQuantizer", "NotInitialisedError",
           "WeightQuantizer", "grad_scale", "QConv2d", "QLinear",
           "act_quantizers", "fold_bn", "frozen_for_export", "quantize_model",
           "weight_quantizers"]
