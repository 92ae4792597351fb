"""The weight-sharing supernet of one candidate search space (paper-notes §2.5, §7).

:class:`Supernet` holds, for every stage of a :class:`~spaceevo_lib.space.SpaceChoice`, the
stage's maximum depth of elastic blocks (each elastic over the stage's active width window and
its block type's kernels and expands), plus the fixed stem, stage0 and head. One subnet is
active at a time; training follows the sandwich rule (§7.1: max net, two random nets, min net
per step), for which :meth:`Supernet.sample_max`, :meth:`~Supernet.sample_random` and
:meth:`~Supernet.sample_min` activate and return the subnets.

As in the reference ``Supernet.forward``, the network bicubic-resizes its input to the active
resolution (the loader always yields the largest size); an input that already has that size
is passed through untouched. :meth:`Supernet.extract_subnet` returns exactly
``build_subnet(space, subnet)`` with the shared weights (and BN running statistics) copied.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spaceevo_lib.nn.subnet import HEAD_CHILDREN, SubnetModel, as_space, as_subnet, build_subnet
from spaceevo_lib.space.encoding import SpaceChoice, Subnet, max_subnet, min_subnet, sample_subnet
from spaceevo_lib.space.hyperspace import STAGE_NAMES
from spaceevo_lib.supernet.elastic import _STATIC_OF, ElasticBlock, ElasticHead, elastic_block


class ElasticStage(nn.Module):
    """The maximum-depth chain of elastic blocks of one stage; the first ``active_depth`` run.

    Stride on the first block only (§2.1).
    """

    def __init__(self, name: str, blocks: list[ElasticBlock], depths: tuple[int, ...]):
        super().__init__()
        self.name, self.depths = name, depths
        self.blocks = nn.ModuleList(blocks)
        self.active_depth = max(depths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks[:self.active_depth]:
            x = block(x)
        return x

    def extra_repr(self) -> str:
        return f"{self.name}, depths {self.depths}"


#: How a block after a stage's first adds its input when its width differs: ``fixed``, the
#: parameter-free channel projection (this study's default, a difference from the paper's
#: code), or ``learned``, the paper's 1x1 conv + BN (see ``elastic.ChannelProjection``).
SHORTCUTS = ("fixed", "learned")


class Supernet(nn.Module):
    """OFA-style weight-sharing supernet of ``space`` (paper-notes §2.5).

    ``n_classes`` defaults to the hyperspace's; ``dropout`` is the rate before the classifier
    (the reference sets 0.2 for the max net only, §7.1: change it with :meth:`set_dropout`);
    ``shortcut``: one of :data:`SHORTCUTS`.
    The max subnet is active after construction. Train-mode batches need B >= 2: feature_mix's
    BN sees one value per channel per image after the global pool (as in the reference).
    """

    def __init__(self, space: SpaceChoice | str, n_classes: int | None = None,
                 dropout: float = 0.0, shortcut: str = "fixed"):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}; got {shortcut!r}")
        self.shortcut = shortcut
        self.space = as_space(space)
        self.hyperspace = self.space.spec
        hs = self.hyperspace
        self.n_classes = hs.n_classes if n_classes is None else int(n_classes)
        stages = {}
        cins: tuple[int, ...] = (3,)
        for name in STAGE_NAMES:
            spec, st = self.space.block(name), hs.stage(name)
            widths = self.space.widths(name)
            blocks = []
            for i in range(max(st.depths)):
                blocks.append(elastic_block(spec, cins, widths, st.stride if i == 0 else 1,
                                            fixed_shortcut=shortcut == "fixed" and i > 0))
                cins = widths
            stages[name] = ElasticStage(name, blocks, st.depths)
        self.stages = nn.ModuleDict(stages)
        self.head = ElasticHead(cins, hs.final_expand.width, hs.final_expand.activation,
                                hs.feature_mix.width, hs.feature_mix.activation,
                                self.n_classes, dropout)
        self._active: Subnet | None = None
        self.sample_max()

    # --- active subnet

    @property
    def active_subnet(self) -> Subnet:
        assert self._active is not None
        return self._active

    @property
    def active_resolution(self) -> int:
        return self.active_subnet.resolution

    def set_active_subnet(self, subnet: Subnet | str) -> Subnet:
        """Activate ``subnet`` after checking it against the space (EncodingError if not in)."""
        sub = as_subnet(subnet).validate(self.hyperspace, self.space)
        for name, blocks in sub.stage_blocks().items():
            stage = self.stages[name]
            stage.active_depth = len(blocks)
            for block, (k, w, e) in zip(stage.blocks, blocks):
                block.set_active(k, w, e)
        self._active = sub
        return sub

    def sample_min(self) -> Subnet:
        """Activate and return the smallest subnet (all minima, lowest resolution)."""
        return self.set_active_subnet(min_subnet(self.hyperspace, self.space))

    def sample_max(self) -> Subnet:
        """Activate and return the largest subnet (all maxima, highest resolution)."""
        return self.set_active_subnet(max_subnet(self.hyperspace, self.space))

    def sample_random(self, rng: np.random.Generator,
                      resolutions: tuple[int, ...] | None = None) -> Subnet:
        """Activate and return a uniformly random subnet; the resolution comes from
        ``resolutions`` (default: the hyperspace's sample_resolutions, §2.5)."""
        return self.set_active_subnet(
            sample_subnet(self.hyperspace, self.space, rng, resolutions))

    def set_dropout(self, p: float) -> None:
        self.head.dropout.p = float(p)

    @torch.no_grad()
    def zero_last_gamma(self) -> int:
        """Zero the last BN scale of every block with a residual add (the reference's
        ``zero_last_gamma``, AlphaNet/SpaceEvo): each such block starts as its shortcut.
        Returns how many were zeroed."""
        n = 0
        for stage in self.stages.values():
            for block in stage.blocks:
                bn = block.last_bn()
                if bn is not None:
                    bn.weight.zero_()
                    n += 1
        return n

    # --- forward and extraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W)
        r = self.active_resolution
        if tuple(x.shape[-2:]) != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False)
        for stage in self.stages.values():
            x = stage(x)  # (B, C, H', W')
        return self.head(x)  # (B, n_classes)

    def extract_subnet(self, subnet: Subnet | str | None = None) -> SubnetModel:
        """``build_subnet(space, subnet)`` with the shared weights copied, in eval mode.

        ``subnet`` defaults to the active one; the active subnet is left unchanged.
        """
        previous = self._active
        sub = self.set_active_subnet(previous if subnet is None else subnet)
        try:
            model = build_subnet(self.space, sub, self.n_classes, self.head.dropout.p,
                                 fixed_shortcuts=self.shortcut == "fixed")
            for name, op in self.paired_ops(model):
                op.copy_to(model.get_submodule(name))
        finally:
            if previous is not None:
                self.set_active_subnet(previous)
        return model.eval()

    def paired_ops(self, model: SubnetModel) -> list[tuple[str, nn.Module]]:
        """(name in ``model``, elastic op) of every conv, BN and linear layer of the static
        network of the active subnet, paired in the static blocks' layer order (what
        :meth:`extract_subnet` copies; a structural mismatch raises)."""
        pairs: list[tuple[str, nn.Module]] = []

        def pair(ops, prefixes):
            leaves = [(f"{p}.{n}" if n else p, m) for p in prefixes
                      for n, m in model.get_submodule(p).named_modules()
                      if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
            if len(leaves) != len(ops):
                raise RuntimeError(f"elastic block has {len(ops)} active ops, static {prefixes} "
                                   f"has {len(leaves)} conv/BN/linear layers")
            for (leaf_name, leaf), op in zip(leaves, ops):
                if not any(isinstance(op, d) and isinstance(leaf, s) for d, s in _STATIC_OF):
                    raise RuntimeError(f"cannot pair {type(op).__name__} with "
                                       f"{type(leaf).__name__} at {leaf_name}")
                pairs.append((leaf_name, op))

        cin = 3
        for name in STAGE_NAMES:
            stage = self.stages[name]
            prefixes = (["first_conv"] if name == "first_conv" else
                        [f"{name}.{i}" for i in range(stage.active_depth)])
            for block, prefix in zip(stage.blocks[:stage.active_depth], prefixes):
                block._check_cin(cin)
                pair(block.active_ops(cin), [prefix])
                cin = block.active_w
        pair(self.head.active_ops(cin), list(HEAD_CHILDREN))
        return pairs
