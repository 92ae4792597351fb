"""Two-way string forms of candidate search spaces and subnets (paper-notes §2.5, §6, §10).

* :class:`SpaceChoice` ``onnxw-151122-023231``: the hyperspace, then one block-type digit and
  one width-window digit for each of stage1..6: what SpaceEvo's space search outputs.
* :class:`Subnet` ``d1#1#2#..._k3#..._w16#..._e0#0.5#4.0#..._r160``: one depth per stage
  (first_conv, stage0 .. stage6), then one kernel, width and expand per block, then the input
  resolution: what the supernet trains and the subnet search outputs. Expands are written as
  Python floats (``4.0``, ``0.5``), and ``0`` marks a block without an expand ratio (the stem,
  MBv1Dual), exactly as the reference code prints them.

The strings key LUT files, caches and result tables, so ``decode`` accepts only the canonical
form ``encode`` writes: ``Subnet.decode(s).encode() == s`` byte for byte (style lesson 3).
Every bad string raises :class:`EncodingError` naming the field (d/k/w/e/r, stage, block).
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spaceevo_lib.data.reference import load_search_result
from spaceevo_lib.space.hyperspace import (STAGE_NAMES, BlockSpec, Hyperspace, as_hyperspace,
                                           get_hyperspace, list_hyperspaces)

_INT = re.compile(r"0|[1-9][0-9]*")
_DIGITS = re.compile(r"[0-9]+")
_FIELDS = (("d", "depths"), ("k", "kernels"), ("w", "widths"), ("e", "expands"),
           ("r", "resolution"))


class EncodingError(ValueError):
    """A space or subnet string (or value) that is malformed or outside its hyperspace.

    ``field`` names the offending part: ``hyperspace``/``blocks``/``windows`` for spaces,
    ``d``/``k``/``w``/``e``/``r`` for subnets, or None for the overall layout.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# ----------------------------------------------------------------------------- spaces


@dataclass(frozen=True)
class SpaceChoice:
    """A candidate search space: block type and width window of stage1..6 (§2.1, §6).

    Checked against the registered hyperspace on construction, so a SpaceChoice is always a
    member of its hyperspace.
    """

    hyperspace: str
    blocks: tuple[int, ...]
    windows: tuple[int, ...]

    def __post_init__(self) -> None:
        try:
            hs = get_hyperspace(self.hyperspace)
        except KeyError:
            raise EncodingError(
                f"hyperspace: unknown {self.hyperspace!r}; valid: {', '.join(list_hyperspaces())}",
                "hyperspace") from None
        n = len(hs.searchable_stages)
        for fname, limit in (("blocks", lambda s: len(hs.blocks)),
                             ("windows", lambda s: hs.stage(s).n_windows)):
            values = _int_tuple(getattr(self, fname), fname)
            object.__setattr__(self, fname, values)
            if len(values) != n:
                raise EncodingError(
                    f"{fname}: need {n} values (one per {', '.join(hs.searchable_stages)}); "
                    f"got {len(values)}", fname)
            for stage, v in zip(hs.searchable_stages, values):
                if not 0 <= v < limit(stage):
                    what = (", ".join(f"{b.index}={b.code}" for b in hs.blocks)
                            if fname == "blocks" else f"0..{limit(stage) - 1}")
                    raise EncodingError(
                        f"{fname}: {stage} of {hs.name} allows {what}; got {v}", fname)

    @property
    def spec(self) -> Hyperspace:
        """The hyperspace this space lives in."""
        return get_hyperspace(self.hyperspace)

    def block(self, stage: str) -> BlockSpec:
        """Block type of ``stage`` (the fixed block for first_conv and stage0)."""
        hs = self.spec
        if stage == "first_conv":
            return hs.first_conv
        if stage == "stage0":
            return hs.stage0
        return hs.blocks[self.blocks[_searchable_index(hs, stage)]]

    def widths(self, stage: str) -> tuple[int, ...]:
        """Active widths of ``stage``: its window, or the whole list for first_conv/stage0."""
        hs = self.spec
        st = hs.stage(stage)
        if stage in hs.searchable_stages:
            return st.window(self.windows[_searchable_index(hs, stage)])
        return st.widths

    def encode(self) -> str:
        """``<hyperspace>-<6 block digits>-<6 window digits>``, e.g. ``onnxw-151122-023231``."""
        return "-".join((self.hyperspace, "".join(map(str, self.blocks)),
                         "".join(map(str, self.windows))))

    __str__ = encode

    @classmethod
    def decode(cls, s: str) -> SpaceChoice:
        """Parse :meth:`encode`'s form; EncodingError names the bad part."""
        layout = "<hyperspace>-<one block digit per stage1..6>-<one window digit per stage>"
        if not isinstance(s, str) or s.count("-") < 2:
            raise EncodingError(f"space string must look like {layout}; got {s!r}")
        # the longest hyperspace name the string starts with (names hold '-': onnxw-train)
        known = sorted(list_hyperspaces(), key=len, reverse=True)
        name = next((h for h in known if s.startswith(h + "-")), None)
        if name is None:
            name = s.rsplit("-", 2)[0]
            raise EncodingError(
                f"hyperspace: unknown {name!r} in {s!r}; valid: {', '.join(list_hyperspaces())}",
                "hyperspace")
        rest = s[len(name) + 1:].split("-")
        if len(rest) != 2:
            raise EncodingError(f"space {s!r}: after the hyperspace {name!r} it must go on "
                                f"-<block digits>-<window digits> ({layout})", "blocks")
        blocks, windows = rest
        for fname, digits in (("blocks", blocks), ("windows", windows)):
            if not _DIGITS.fullmatch(digits):
                raise EncodingError(
                    f"{fname}: must be digits, one per stage1..6 ({layout}); got {digits!r}",
                    fname)
        return cls(name, tuple(map(int, blocks)), tuple(map(int, windows)))

    def describe(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Per stage (first_conv .. stage6): block code and active widths (cf. §6 table)."""
        return {s: (self.block(s).code, self.widths(s)) for s in STAGE_NAMES}


def _searchable_index(hs: Hyperspace, stage: str) -> int:
    try:
        return hs.searchable_stages.index(stage)
    except ValueError:
        raise KeyError(
            f"unknown stage {stage!r}; valid: {', '.join(STAGE_NAMES)}") from None


def _int_tuple(values: Any, fname: str) -> tuple[int, ...]:
    try:
        return tuple(operator.index(v) for v in values)
    except TypeError:
        raise EncodingError(f"{fname}: values must be integers; got {values!r}", fname) from None


@dataclass(frozen=True)
class StageOptions:
    """What one stage of a candidate space lets a subnet pick (§2.1 'inside an elastic stage')."""

    name: str
    block: BlockSpec
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    widths: tuple[int, ...]
    expands: tuple[float | None, ...]

    @property
    def per_block(self) -> int:
        """Number of (kernel, width, expand) choices of one block."""
        return len(self.kernels) * len(self.widths) * len(self.expands)


def stage_options(space: SpaceChoice | str) -> tuple[StageOptions, ...]:
    """Allowed depths, kernels, widths and expands of every stage, first_conv .. stage6."""
    sp = as_space(space)
    hs = sp.spec
    out = []
    for name in STAGE_NAMES:
        blk = sp.block(name)
        out.append(StageOptions(name, blk, hs.stage(name).depths, blk.kernels, sp.widths(name),
                                blk.expand_choices))
    return tuple(out)


def as_space(space: SpaceChoice | str) -> SpaceChoice:
    return space if isinstance(space, SpaceChoice) else SpaceChoice.decode(space)


# ----------------------------------------------------------------------------- subnets


def _fmt_expand(e: float | None) -> str:
    return "0" if e is None else str(float(e))


@dataclass(frozen=True)
class Subnet:
    """One subnet of a supernet: depths per stage, k/w/e per block, resolution (§2.5, §10).

    ``depths`` has one entry per stage of :data:`STAGE_NAMES`; ``kernels``, ``widths`` and
    ``expands`` one entry per block in network order, first_conv and stage0 included
    (``expands`` holds None where the block has no expand ratio). The head is not encoded.
    """

    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    widths: tuple[int, ...]
    expands: tuple[float | None, ...]
    resolution: int

    def __post_init__(self) -> None:
        for f in ("depths", "kernels", "widths"):
            object.__setattr__(self, f, _int_tuple(getattr(self, f), f[0]))
        object.__setattr__(self, "expands", tuple(
            None if e is None or e == 0 else float(e) for e in self.expands))
        try:
            object.__setattr__(self, "resolution", operator.index(self.resolution))
        except TypeError:
            raise EncodingError(f"r: resolution must be an integer; got {self.resolution!r}",
                                "r") from None
        if len(self.depths) != len(STAGE_NAMES):
            raise EncodingError(
                f"d: need {len(STAGE_NAMES)} depths ({', '.join(STAGE_NAMES)}); "
                f"got {len(self.depths)}", "d")
        for stage, d in zip(STAGE_NAMES, self.depths):
            if d < 1:
                raise EncodingError(f"d: depth of {stage} must be >= 1; got {d}", "d")
        n = sum(self.depths)
        for f, values in (("k", self.kernels), ("w", self.widths), ("e", self.expands)):
            if len(values) != n:
                raise EncodingError(
                    f"{f}: need one value per block, {n} (the sum of the depths); "
                    f"got {len(values)}", f)
        if self.resolution < 1:
            raise EncodingError(f"r: resolution must be >= 1; got {self.resolution}", "r")

    # --- string form

    def encode(self) -> str:
        """The reference string, e.g. ``d1#1#2#2#2#2#2#1_k3#..._e0#0.5#4.0#..._r160``."""
        parts = [
            "d" + "#".join(map(str, self.depths)),
            "k" + "#".join(map(str, self.kernels)),
            "w" + "#".join(map(str, self.widths)),
            "e" + "#".join(_fmt_expand(e) for e in self.expands),
            f"r{self.resolution}",
        ]
        return "_".join(parts)

    __str__ = encode

    @classmethod
    def decode(cls, s: str) -> Subnet:
        """Parse the canonical string; EncodingError names the field and what is allowed."""
        layout = "d<8 depths>_k<kernels>_w<widths>_e<expands>_r<resolution>, '#'-separated"
        if not isinstance(s, str):
            raise EncodingError(f"subnet string must be a str ({layout}); got {s!r}")
        parts = s.split("_")
        if len(parts) != len(_FIELDS):
            raise EncodingError(
                f"subnet string must have {len(_FIELDS)} '_'-separated fields ({layout}); "
                f"got {len(parts)} in {s!r}")
        values: dict[str, list] = {}
        for part, (f, what) in zip(parts, _FIELDS):
            if not part.startswith(f):
                raise EncodingError(
                    f"{f}: field {len(values) + 1} must start with {f!r} ({what}); "
                    f"got {part[:12]!r}", f)
            tokens = part[1:].split("#")
            values[f] = [_parse_token(f, i, tok) for i, tok in enumerate(tokens)]
        if len(values["r"]) != 1:
            raise EncodingError(f"r: one resolution expected; got {len(values['r'])}", "r")
        return cls(tuple(values["d"]), tuple(values["k"]), tuple(values["w"]),
                   tuple(values["e"]), values["r"][0])

    # --- structure

    @property
    def n_blocks(self) -> int:
        return len(self.kernels)

    def stage_blocks(self) -> dict[str, tuple[tuple[int, int, float | None], ...]]:
        """Per stage name: its blocks' (kernel, width, expand) triples."""
        out, start = {}, 0
        for stage, d in zip(STAGE_NAMES, self.depths):
            out[stage] = tuple(zip(self.kernels[start:start + d], self.widths[start:start + d],
                                   self.expands[start:start + d]))
            start += d
        return out

    def validate(self, hyperspace: Hyperspace | str,
                 space: SpaceChoice | str) -> Subnet:
        """Check every value against ``space`` (in ``hyperspace``); return self.

        Depth in the stage's depth list; kernel and expand allowed for the stage's block type
        (first_conv/stage0: the fixed blocks, k3 and e0 / e1.0 or e0.5); width in the
        stage's active window (first_conv, stage0: whole list); resolution in the
        hyperspace's resolutions.
        """
        hs = as_hyperspace(hyperspace)
        sp = as_space(space)
        if sp.hyperspace != hs.name:
            raise EncodingError(f"space {sp.encode()!r} is not in hyperspace {hs.name!r}")
        start = 0
        for pos, (opt, d) in enumerate(zip(stage_options(sp), self.depths)):
            if d not in opt.depths:
                raise EncodingError(
                    f"d: {opt.name} (position {pos}) allows depths {opt.depths}; got {d}", "d")
            for b in range(d):
                i = start + b
                where = f"{opt.name} block {b} (position {i})"
                checks = (("k", "kernel", self.kernels[i], opt.kernels),
                          ("w", "width", self.widths[i], opt.widths),
                          ("e", "expand", self.expands[i], opt.expands))
                for f, what, v, allowed in checks:
                    if v not in allowed:
                        shown = _fmt_expand(v) if f == "e" else v
                        ok = tuple(_fmt_expand(a) for a in allowed) if f == "e" else allowed
                        raise EncodingError(
                            f"{f}: {where} allows {what} {', '.join(map(str, ok))} "
                            f"({opt.block.code} in {sp.encode()}); got {shown}", f)
            start += d
        if self.resolution not in hs.resolutions:
            raise EncodingError(
                f"r: {hs.name} allows resolutions {hs.resolutions}; got {self.resolution}", "r")
        return self


def _parse_token(f: str, i: int, tok: str) -> int | float | None:
    if f != "e":
        if not _INT.fullmatch(tok):
            raise EncodingError(
                f"{f}: value {i} must be a non-negative integer without leading zeros; "
                f"got {tok!r}", f)
        return int(tok)
    try:
        e = float(tok)
    except ValueError:
        raise EncodingError(f"e: value {i} must be a number like 4.0 or 0; got {tok!r}",
                            "e") from None
    e_or_none = None if e == 0 else e
    canonical = _fmt_expand(e_or_none) if math.isfinite(e) and e >= 0 else None
    if canonical != tok:
        raise EncodingError(
            f"e: value {i} must be written as a float with one decimal like 4.0 or 0.5, "
            f"or 0 for none; got {tok!r}", "e")
    return e_or_none


# ----------------------------------------------------------------------------- sampling


def min_subnet(hyperspace: Hyperspace | str, space: SpaceChoice | str) -> Subnet:
    """Smallest subnet: min depth, k, width, expand per stage, min resolution (§2.5).

    The published A0 models are exactly this subnet of their space (paper-notes §10).
    """
    return _extreme(hyperspace, space, 0)


def max_subnet(hyperspace: Hyperspace | str, space: SpaceChoice | str) -> Subnet:
    """Largest subnet: max depth, k, width, expand per stage, max resolution."""
    return _extreme(hyperspace, space, -1)


def _extreme(hyperspace: Hyperspace | str, space: SpaceChoice | str, i: int) -> Subnet:
    hs, sp = as_hyperspace(hyperspace), as_space(space)
    _check_pair(hs, sp)
    d, k, w, e = [], [], [], []
    for opt in stage_options(sp):
        d.append(opt.depths[i])
        k += [opt.kernels[i]] * opt.depths[i]
        w += [opt.widths[i]] * opt.depths[i]
        e += [opt.expands[i]] * opt.depths[i]
    res = min(hs.resolutions) if i == 0 else max(hs.resolutions)
    return Subnet(tuple(d), tuple(k), tuple(w), tuple(e), res)


def sample_subnet(hyperspace: Hyperspace | str, space: SpaceChoice | str,
                  rng: np.random.Generator,
                  resolutions: Sequence[int] | None = None) -> Subnet:
    """A uniformly random subnet: depth per stage, then k, w, e per block independently.

    The resolution is drawn from ``resolutions`` (default: the hyperspace's
    ``sample_resolutions``, {192, 208, 224} in the paper's code, §2.5).
    """
    hs, sp = as_hyperspace(hyperspace), as_space(space)
    _check_pair(hs, sp)

    def pick(options: Sequence) -> Any:
        return options[int(rng.integers(len(options)))]

    d, k, w, e = [], [], [], []
    for opt in stage_options(sp):
        depth = pick(opt.depths)
        d.append(depth)
        for _ in range(depth):
            k.append(pick(opt.kernels))
            w.append(pick(opt.widths))
            e.append(pick(opt.expands))
    res = pick(tuple(resolutions) if resolutions is not None else hs.sample_resolutions)
    return Subnet(tuple(d), tuple(k), tuple(w), tuple(e), int(res))


# ----------------------------------------------------------------------------- search moves


def _padded(subnet: Subnet, options: Sequence[StageOptions]) -> list[list[tuple]]:
    """Per stage, (kernel, width, expand) for every block up to the stage's largest depth:
    the supernet's view, where blocks past the active depth keep settings (here the last
    active block's), so that a mutation or crossover that deepens a stage has values."""
    out = []
    for opt, blocks in zip(options, subnet.stage_blocks().values()):
        out.append(list(blocks) + [blocks[-1]] * (max(opt.depths) - len(blocks)))
    return out


def _from_padded(depths: Sequence[int], padded: Sequence[Sequence[tuple]],
                 resolution: int) -> Subnet:
    flat = [blk for d, stage in zip(depths, padded) for blk in stage[:d]]
    return Subnet(tuple(depths), tuple(k for k, _, _ in flat), tuple(w for _, w, _ in flat),
                  tuple(e for _, _, e in flat), resolution)


def mutate_subnet(space: SpaceChoice | str, subnet: Subnet | str, rng: np.random.Generator,
                  prob: float = 0.3, resolution_prob: float = 0.5,
                  resolutions: Sequence[int] | None = None) -> Subnet:
    """The subnet search's mutation (paper-notes §8): every depth, and every kernel, width
    and expand of every block position up to the stage's largest depth, is redrawn from the
    space's options with probability ``prob``; the resolution with ``resolution_prob`` from
    ``resolutions`` (default: the hyperspace's ``sample_resolutions``). The child is a subnet
    of ``space`` whenever the parent is; it may equal the parent."""
    sp = as_space(space)
    options = stage_options(sp)
    parent = as_subnet(subnet).validate(sp.hyperspace, sp)

    def maybe(value, choices):
        return choices[int(rng.integers(len(choices)))] if rng.random() < prob else value

    depths, padded = [], []
    for opt, d, blocks in zip(options, parent.depths, _padded(parent, options)):
        depths.append(maybe(d, opt.depths))
        padded.append([(maybe(k, opt.kernels), maybe(w, opt.widths), maybe(e, opt.expands))
                       for k, w, e in blocks])
    res = tuple(resolutions) if resolutions is not None else sp.spec.sample_resolutions
    r = (res[int(rng.integers(len(res)))] if rng.random() < resolution_prob
         else parent.resolution)
    return _from_padded(depths, padded, int(r))


def crossover_subnets(space: SpaceChoice | str, a: Subnet | str, b: Subnet | str,
                      rng: np.random.Generator) -> Subnet:
    """The subnet search's crossover (paper-notes §8): the depths and the resolution of one
    parent (drawn), and each block position's (kernel, width, expand) from either parent
    (drawn per block). A subnet of ``space`` whenever both parents are."""
    sp = as_space(space)
    options = stage_options(sp)
    pa, pb = (as_subnet(x).validate(sp.hyperspace, sp) for x in (a, b))
    base = pa if rng.random() < 0.5 else pb
    padded = [[ba if rng.random() < 0.5 else bb for ba, bb in zip(sa, sb)]
              for sa, sb in zip(_padded(pa, options), _padded(pb, options))]
    return _from_padded(base.depths, padded, base.resolution)


def _check_pair(hs: Hyperspace, sp: SpaceChoice) -> None:
    if sp.hyperspace != hs.name:
        raise EncodingError(f"space {sp.encode()!r} is not in hyperspace {hs.name!r}")


# ----------------------------------------------------------------------------- counting


def count_spaces(hyperspace: Hyperspace | str) -> int:
    """Number of candidate spaces: product over stage1..6 of n_blocks * n_windows (§2.1)."""
    hs = as_hyperspace(hyperspace)
    return math.prod(len(hs.blocks) * n for n in hs.window_counts)


def count_subnets(hyperspace: Hyperspace | str, space: SpaceChoice | str,
                  resolutions: Sequence[int] | None = None) -> int:
    """Exact number of subnets of ``space``, resolutions included.

    Per stage: sum over depths d of (kernels * active widths * expands) ** d; product over
    the 8 stages; times the number of resolutions (default: all of the hyperspace's).
    """
    hs, sp = as_hyperspace(hyperspace), as_space(space)
    _check_pair(hs, sp)
    n_res = len(hs.resolutions if resolutions is None else tuple(resolutions))
    return n_res * math.prod(sum(opt.per_block ** d for d in opt.depths)
                             for opt in stage_options(sp))


# ----------------------------------------------------------------------------- published


def published_spaces(root: Path | None = None) -> dict[str, SpaceChoice]:
    """The paper's five evolved spaces, e.g. ``spaceevo@vnni`` (paper-notes §6); ``root`` is a
    data directory (default: settings.data_dir())."""
    raw = load_search_result(root)["specific_supernet_encoding_dict"]
    return {name: SpaceChoice.decode(s) for name, s in raw.items()}


def published_subnets(root: Path | None = None) -> dict[str, tuple[str, Subnet]]:
    """The ten SEQnet models: name -> (space name, Subnet), each validated (§10)."""
    raw = load_search_result(root)
    spaces = {n: SpaceChoice.decode(s) for n, s in raw["specific_supernet_encoding_dict"].items()}
    out = {}
    for name, (space_name, s) in raw["specific_subnet_encoding_dict"].items():
        sp = spaces[space_name]
        try:
            out[name] = (space_name, Subnet.decode(s).validate(sp.hyperspace, sp))
        except EncodingError as exc:
            raise EncodingError(f"{name}: {exc}", exc.field) from exc
    return out


def as_subnet(subnet: Subnet | str) -> Subnet:
    return subnet if isinstance(subnet, Subnet) else Subnet.decode(subnet)


def random_space(hs: Hyperspace, rng: np.random.Generator,
                 blocks: tuple[int, ...] | None = None) -> SpaceChoice:
    """A uniformly random candidate space of ``hs``: a block type (or the given ``blocks``)
    and a width window per searchable stage, as the space evolution draws its population."""
    n = len(hs.window_counts)
    b = blocks if blocks is not None else tuple(int(x) for x in rng.integers(len(hs.blocks),
                                                                               size=n))
    w = tuple(int(rng.integers(c)) for c in hs.window_counts)
    return SpaceChoice(hs.name, b, w)
