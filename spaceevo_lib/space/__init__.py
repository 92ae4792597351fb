"""Hyperspaces, candidate search spaces and subnets as plain values (no torch: their PyTorch
networks are :mod:`spaceevo_lib.nn.subnet`).

Paper-notes §2 (hyperspaces, elastic stages, width windows), §6 (published spaces) and §10
(SEQnet subnets). Space strings look like ``onnxw-151122-023231``; subnet strings like
``d1#1#2#..._k3#..._w16#..._e0#0.5#4.0#..._r160``.
"""

from spaceevo_lib.space.encoding import (EncodingError, SpaceChoice, StageOptions, Subnet, as_space,
                                         as_subnet, count_spaces, count_subnets,
                                         crossover_subnets, max_subnet, min_subnet,
                                         mutate_subnet, published_spaces, published_subnets,
                                         random_space, sample_subnet, stage_options)
from spaceevo_lib.space.hyperspace import (HEAD_PARTS, SEARCHABLE_STAGES, STAGE_NAMES, BlockSpec,
                                           HeadSpec, Hyperspace, StageSpec, as_hyperspace,
                                           get_hyperspace, list_hyperspaces, register_hyperspace,
                                           scale_resolutions, scale_widths, scaled_hyperspace)

__all__ = [
    "HEAD_PARTS", "SEARCHABLE_STAGES", "STAGE_NAMES",
    "BlockSpec", "EncodingError", "HeadSpec", "Hyperspace", "SpaceChoice", "StageOptions",
    "StageSpec", "Subnet",
    "as_hyperspace", "as_space", "as_subnet", "count_spaces", "count_subnets",
    "crossover_subnets", "get_hyperspace", "list_hyperspaces",
    "max_subnet", "min_subnet", "mutate_subnet", "published_spaces", "published_subnets",
    "random_space", "register_hyperspace", "sample_subnet", "scale_resolutions",
    "scale_widths", "scaled_hyperspace", "stage_options",
]
