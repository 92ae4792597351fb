"""PyTorch networks of the study: the block registry (one description per block code) and its
blocks, single operators, torchvision reference models, static subnets of a space
(:mod:`.subnet`), their MACs and parameters (:mod:`.flops`) and BN re-calibration
(:mod:`.bn`). Reusable machinery only; the plain-value descriptions are :mod:`spaceevo_lib.space`.
"""

from .blocks import ConvBNAct, SqueezeExcite, create_block, head_parts, list_blocks, make_divisible
from .bn import recalibrate_bn
from .models import TORCHVISION_MODELS, create_model
from .ops import OPERATORS, create_operator, list_operators, operator_input_shape
from .registry import BLOCK_TYPES, K3_STACK, BlockType, block_type

__all__ = ["BLOCK_TYPES", "BlockType", "ConvBNAct", "K3_STACK", "SqueezeExcite", "block_type",
           "create_block", "head_parts", "list_blocks", "make_divisible", "TORCHVISION_MODELS",
           "create_model", "OPERATORS", "create_operator", "list_operators",
           "operator_input_shape", "recalibrate_bn"]
