"""Weight-sharing supernet of a SpaceEvo candidate space (paper-notes §2.5, §7).

:class:`Supernet` trains all subnets of a :class:`~spaceevo_lib.space.SpaceChoice` at once
(OFA-style first-N channel slicing, kernel centre crop, sliced BN) and extracts any subnet as
the static network of :func:`spaceevo_lib.nn.subnet.build_subnet` with its weights copied.
:mod:`.quantized` puts LSQ+ quantizers on elastic networks (module swapping); :mod:`.check`
verifies that an extracted subnet computes what the supernet computes for it;
:mod:`.training` trains a supernet on the one engine (sandwich, in-place alpha-divergence
distillation, FP32 then LSQ+); :mod:`.evaluation` measures subnets with inherited weights;
:mod:`.warmstart` starts its stages from the block-wise students; :mod:`.deploy` turns a
subnet of the LSQ+ supernet into a deployable learned-scale INT8 network.
"""

from spaceevo_lib.supernet.check import demo_images, extraction_check
from spaceevo_lib.supernet.elastic import (DynamicBatchNorm2d, DynamicConv2d, DynamicConvBNAct,
                                           DynamicK3Depthwise, DynamicLinear, DynamicSE,
                                           ElasticBlock, ElasticHead, copy_weights, elastic_block)
from spaceevo_lib.supernet.network import ElasticStage, Supernet

__all__ = [
    "DynamicBatchNorm2d", "DynamicConv2d", "DynamicConvBNAct", "DynamicK3Depthwise",
    "DynamicLinear", "DynamicSE", "ElasticBlock", "ElasticHead", "ElasticStage", "Supernet",
    "copy_weights", "demo_images", "elastic_block", "extraction_check",
]
