"""Quantization-aware training: LSQ+ fake quantizers whose learned scales deploy as they are
(:mod:`.lsq`)."""

from .lsq import (ACT_QMAX, EPS, WEIGHT_QMAX, ActQuantizer, NotInitialisedError,
                  WeightQuantizer, grad_scale, round_ste)

__all__ = ["ACT_QMAX", "EPS", "WEIGHT_QMAX", "ActQuantizer", "NotInitialisedError",
           "WeightQuantizer", "grad_scale", "round_ste"]
