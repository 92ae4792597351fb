"""Whole reference networks: torchvision's hand-designed mobile and ResNet models.

Random weights (``weights=None``): latency does not depend on trained values, and this machine
cannot download pretrained ones. The book says so wherever these are timed.
"""

from __future__ import annotations

from torch import nn

TORCHVISION_MODELS = ("mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2",
                      "efficientnet_b0", "resnet18", "resnet50")


def create_model(name: str, num_classes: int = 1000, seed: int = 0) -> nn.Module:
    """A torchvision model by name, randomly initialised with ``seed``, in eval mode."""
    import torch
    import torchvision
    if name not in TORCHVISION_MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(TORCHVISION_MODELS)}")
    torch.manual_seed(seed)
    return getattr(torchvision.models, name)(weights=None, num_classes=num_classes).eval()
