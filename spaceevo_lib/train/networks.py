"""The networks the training chapters train, by name: the teacher, any subnet, torchvision.

The **teacher** (of the block-wise distillation chapter, trained in the INT8 chapter) is an
EfficientNetV2-style subnet of the training-scale mobilew hyperspace, so that its stages have
the hyperspace's strides and split stage by stage.
"""

from __future__ import annotations

from ..nn.models import TORCHVISION_MODELS, create_model
from ..nn.registry import block_type
from ..nn.subnet import build_subnet
from ..space.encoding import SpaceChoice, Subnet, stage_options
from ..space.hyperspace import as_hyperspace

#: The teacher: EfficientNetV2's layout (Fused-MBConv with SE in the high-resolution stages 1-3,
#: MBConv with SE in stages 4-6, swish, 3x3 kernels) inside the training-scale mobilew
#: hyperspace: the widest window of every stage at its largest width, EfficientNet-B0-like
#: depths. Block indices of mobilew: 4 = FusedMBSERes, 2 = MBv3Res.
TEACHER_BLOCKS = (4, 4, 4, 2, 2, 2)


TEACHER_DEPTHS = (1, 1, 2, 2, 2, 3, 3, 1)  # first_conv, stage0 .. stage6


TEACHER_EXPANDS = {"fused": 2.0, "mb": 3.0}


def teacher_network(hyperspace: str = "mobilew-train", n_classes: int | None = None):
    """The teacher as a static subnet (``SubnetModel``: children first_conv, stage0..6, head)."""
    hs = as_hyperspace(hyperspace)
    windows = tuple(hs.stage(s).n_windows - 1 for s in hs.searchable_stages)
    space = SpaceChoice(hs.name, TEACHER_BLOCKS, windows)
    ks, ws, es = [], [], []
    for opt, depth in zip(stage_options(space), TEACHER_DEPTHS):
        family = block_type(opt.block.code).family
        want = TEACHER_EXPANDS.get(family)
        e = (want if want in opt.expands else opt.expands[-1]) if opt.expands != (None,) \
            else None
        for _ in range(depth):
            ks.append(min(opt.kernels))
            ws.append(max(opt.widths))
            es.append(e)
    sub = Subnet(TEACHER_DEPTHS, tuple(ks), tuple(ws), tuple(es), max(hs.resolutions))
    return build_subnet(space, sub, n_classes=n_classes)


def build_network(name: str, resolution: int, n_classes: int = 10,
                  hyperspace: str = "mobilew-train"):
    """``teacher`` (the INT8 chapter's, in ``hyperspace``), a subnet as
    ``<space encoding>:<subnet encoding>``, or a torchvision model by name (stem stride 1 at
    32 px, the training scale's rule); returns (model, architecture string of its checkpoints)."""
    if name == "teacher":
        m = teacher_network(hyperspace, n_classes=n_classes)
        return m, f"teacher/{m.space.encode()}:{m.subnet.encode()}"
    if ":" in name:
        space, subnet = name.split(":", 1)
        return build_subnet(space, subnet, n_classes=n_classes), name
    if name not in TORCHVISION_MODELS:
        raise KeyError(f"unknown network {name!r}: 'teacher', '<space>:<subnet>' encodings, or "
                       f"one of {', '.join(TORCHVISION_MODELS)}")
    stem = 1 if resolution <= 32 else 2
    return (create_model(name, n_classes=n_classes, stem_stride=stem).train(),
            f"{name}/c{n_classes}/s{stem}")
