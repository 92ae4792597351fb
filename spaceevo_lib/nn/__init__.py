"""PyTorch networks of the study: hyperspace blocks, single operators, reference models."""

from .blocks import BLOCKS, ConvBNAct, SqueezeExcite, create_block, list_blocks, make_divisible
from .bn import recalibrate_bn
from .models import TORCHVISION_MODELS, create_model
from .ops import OPERATORS, create_operator, list_operators, operator_input_shape

__all__ = ["BLOCKS", "ConvBNAct", "SqueezeExcite", "create_block", "list_blocks",
           "make_divisible", "TORCHVISION_MODELS", "create_model", "OPERATORS",
           "create_operator", "list_operators", "operator_input_shape", "recalibrate_bn"]
