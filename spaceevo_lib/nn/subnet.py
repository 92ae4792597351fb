"""Static PyTorch networks of subnets and of the published SEQnets (paper-notes §2, §10).

A subnet (:class:`~spaceevo_lib.space.Subnet`) of a candidate space
(:class:`~spaceevo_lib.space.SpaceChoice`) becomes a plain network made only of
``spaceevo_lib.nn.blocks`` parts (conv + BN + act, SE, residual adds, GAP, Linear), so that the
ONNX and Keras/TFLite exporters handle it unchanged. The weight-sharing supernet
(``spaceevo_lib.supernet``) extracts into exactly these networks.

Layout (children of :class:`SubnetModel`, an ``nn.Sequential``):

* ``first_conv``: ``ConvBNAct(3, w, 3, stride 2)`` with the hyperspace's stem activation;
* ``stage0`` .. ``stage6``: ``nn.Sequential`` of blocks, per-block (k, w, e) from the subnet,
  the stage stride on the first block. stage0 is the fixed block: ResNet k3 e0.5 ReLU on
  onnxw, and on mobilew a MobileNetV2 block (k3, e1, ReLU; no expansion conv since
  make_divisible(cin) == cin; residual *only* if stride 1 and cin == cout: the registry's
  ``MBv2``, unlike MBv2Res, has no forced 1x1 shortcut);
* ``final_expand``: 1x1 conv + BN + act to the head width (1280 at paper scale);
* ``feature_mix``: global average pool, then 1x1 conv + BN + act (1920). The BN is kept:
  paper-notes §2.4 says every conv is conv+BN(+act), and the reference ``FeatureMixBlock`` is a
  ``QConvNormActivation`` after the pool (§2.2/2.3 only list the conv and its activation);
  it adds 2 x 1920 parameters and no MACs;
* ``logits``: flatten, dropout, ``Linear(1920, n_classes)`` (with bias).

The network takes ``(B, 3, r, r)`` at the subnet's resolution r; unlike the supernet it does
not resize its input (bicubic resize is not exportable to the INT8 runtimes, and the
benchmarks feed r x r inputs).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..space.encoding import (SpaceChoice, Subnet, as_space, as_subnet, published_spaces,
                              published_subnets)
from ..space.hyperspace import STAGE_NAMES, BlockSpec, Hyperspace
from .blocks import head_parts
from .registry import block_type

#: Children of a :class:`SubnetModel` after the stages, in network order.
HEAD_CHILDREN = ("final_expand", "feature_mix", "logits")


class SubnetModel(nn.Sequential):
    """A static subnet: ``first_conv, stage0..stage6, final_expand, feature_mix, logits``.

    ``space`` and ``subnet`` are the encodings it was built from; ``resolution`` the input side.
    """

    def __init__(self, parts: OrderedDict, space: SpaceChoice, subnet: Subnet):
        super().__init__(parts)
        self.space = space
        self.subnet = subnet
        self.resolution = subnet.resolution

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Batch-1 NCHW input shape, as the exporters and :mod:`flops` take it."""
        return (1, 3, self.resolution, self.resolution)

    def extra_repr(self) -> str:
        return f"space={self.space.encode()}, subnet={self.subnet.encode()}"


# ----------------------------------------------------------------------------- parts


def make_block(spec: BlockSpec, cin: int, cout: int, k: int, stride: int,
               e: float | None, fixed_shortcut: bool = False) -> nn.Module:
    """The static block of ``spec`` (candidate or fixed: FirstConv, MBv2, ResNet ...) with the
    hyperspace's activation for it (e.g. MBv3Res: hswish on onnxw, swish on mobilew);
    ``fixed_shortcut``: see :meth:`~spaceevo_lib.nn.registry.BlockType.static`."""
    return block_type(spec.code).static(cin, cout, k, stride, e, spec.activation,
                                        fixed_shortcut=fixed_shortcut)


def make_head(hs: Hyperspace, cin: int, n_classes: int,
              dropout: float = 0.0) -> OrderedDict:
    """final_expand, feature_mix (GAP + conv/BN/act), logits (flatten, dropout, Linear)."""
    fe, fm = hs.final_expand, hs.feature_mix
    return head_parts(cin, fe.width, fe.activation, fm.width, fm.activation, n_classes, dropout)


def build_subnet(space: SpaceChoice | str, subnet: Subnet | str, n_classes: int | None = None,
                 dropout: float = 0.0, fixed_shortcuts: bool = False) -> SubnetModel:
    """The static network of ``subnet`` in ``space`` (validated first: EncodingError names the
    offending field). ``n_classes`` defaults to the hyperspace's; ``dropout`` is the rate before
    the classifier (the reference trains the max net with 0.2, paper-notes §7.1).
    ``fixed_shortcuts``: every block after a stage's first adds its input through the
    parameter-free channel projection when its width differs from its input's (what the
    supernet's subnets do, :class:`~spaceevo_lib.supernet.Supernet`); the paper's learned
    1x1 conv + BN otherwise."""
    sp, sub = as_space(space), as_subnet(subnet)
    hs = sp.spec
    sub.validate(hs, sp)
    parts: OrderedDict = OrderedDict()
    cin = 3
    for name, blocks in sub.stage_blocks().items():
        spec, stride = sp.block(name), hs.stage(name).stride
        mods = []
        for i, (k, w, e) in enumerate(blocks):
            mods.append(make_block(spec, cin, w, k, stride if i == 0 else 1, e,
                                   fixed_shortcut=fixed_shortcuts and i > 0))
            cin = w
        parts[name] = mods[0] if name == "first_conv" else nn.Sequential(*mods)
    parts.update(make_head(hs, cin, hs.n_classes if n_classes is None else n_classes, dropout))
    assert tuple(parts) == STAGE_NAMES + HEAD_CHILDREN
    return SubnetModel(parts, sp, sub)


def build_published(name: str, n_classes: int | None = None,
                    dropout: float = 0.0) -> SubnetModel:
    """One of the ten SEQnets by name, e.g. ``"SEQnet@vnni-A0"`` (paper-notes §10)."""
    subnets = published_subnets()
    if name not in subnets:
        raise KeyError(f"unknown SEQnet {name!r}; valid: {', '.join(subnets)}")
    space_name, sub = subnets[name]
    return build_subnet(published_spaces()[space_name], sub, n_classes, dropout)
