"""Whole reference networks: torchvision's hand-designed mobile and ResNet models.

Random weights (``weights=None``): latency does not depend on trained values, and this machine
cannot download pretrained ones. The book says so wherever these are timed.
"""

from __future__ import annotations

import torch
from torch import nn

TORCHVISION_MODELS = ("mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2",
                      "efficientnet_b0", "resnet18", "resnet50")


def create_model(name: str, n_classes: int = 1000, seed: int = 0,
                 stem_stride: int = 2) -> nn.Module:
    """A torchvision model by name, randomly initialised with ``seed``, in eval mode.

    ``stem_stride=1`` sets the first convolution's stride to 1: the training scale's rule for
    32-px images (the hyperspaces' stem gets the same change, ``configs/hyperspaces.yaml``), so
    that baselines and subnets see the same feature-map sizes.
    """
    import torchvision  # heavy: torchvision
    if name not in TORCHVISION_MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(TORCHVISION_MODELS)}")
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2; got {stem_stride}")
    torch.manual_seed(seed)
    m = getattr(torchvision.models, name)(weights=None, num_classes=n_classes)
    if stem_stride != 2:
        stem = next(c for c in m.modules() if isinstance(c, nn.Conv2d))
        stem.stride = (stem_stride, stem_stride)
    return m.eval()
