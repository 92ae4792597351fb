"""The Q-T score of a candidate search space, exactly as the reference code computes it (§4.1).

For each latency constraint T the score samples N subnets from the LUTs (one resolution per
batch of 500, one uniformly drawn row per stage, stages independent), adds the per-stage
NSR losses and latencies plus the latency of the non-searched parts, and rewards a low mean
loss of the 50 best subnets that meet T, with a mild penalty when few subnets meet it::

    P_T = #(latency <= T) / N + eps
    L_T = mean of the top_k smallest losses among feasible samples  (no_feasible_loss if none)
    lambda_T = max(1, (t / P_T) ** a)
    QT = sum_T 1 / (lambda_T * L_T)

The latency of the parts the search does not touch (stem, stage0, final_expand, feature_mix,
logits) is an explicit input, ``other_latency``: the published release does not ship it
(paper-notes §14). :func:`paper_other_latency` is a documented estimate built from the few
published block latencies; a later chapter passes this host's measured values instead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Union

import numpy as np
import pandas as pd

from spaceevo_lib.search.lut import StageTables
from spaceevo_lib.space import SpaceChoice, as_hyperspace
from spaceevo_lib.space.hyperspace import make_divisible

from .lut import load_lut

#: Latency (ms) of the non-searched parts at a resolution: a callable or a {resolution: ms}.
OtherLatency = Union[Callable[[int], float], Mapping[int, float]]


@dataclass(frozen=True)
class QTConfig:
    """Settings of the Q-T score (paper-notes §4.1, §4.2); defaults are the README run."""

    n_samples: int = 100_000  # subnets sampled per space (LUT.sample_indiv)
    batch: int = 500  # one resolution per batch, drawn uniformly from the LUT resolutions
    top_k: int = 50  # "top-tier" subnets whose mean loss is L_T
    t: float = 0.08  # --latency_loss_t: README setting; the reference code's default is 0.1
    a: float = 0.01  # --latency_loss_a: exponent of the (mild) latency penalty
    #: Latency constraints T (ms) per hyperspace (README): VNNI {10}, Pixel 4 {15, 20}.
    constraints_ms: tuple[tuple[str, tuple[float, ...]], ...] = (
        ("onnxw", (10.0,)), ("mobilew", (15.0, 20.0)))
    no_feasible_loss: float = 1e5  # L_T when no sample meets T
    eps: float = 1e-5  # added to P_T so that the penalty stays finite

    def __post_init__(self) -> None:
        for name in ("n_samples", "batch", "top_k"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"QTConfig.{name} must be a positive integer; got {v!r}")
        for name in ("t", "no_feasible_loss", "eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"QTConfig.{name} must be > 0; got {getattr(self, name)!r}")
        if not self.a >= 0:
            raise ValueError(f"QTConfig.a must be >= 0; got {self.a!r}")
        pairs = (self.constraints_ms.items() if isinstance(self.constraints_ms, Mapping)
                 else self.constraints_ms)  # a {hyperspace: (T, ...)} dict is accepted too
        cons = tuple((str(h), tuple(float(t) for t in ts)) for h, ts in pairs)
        for h, ts in cons:
            if not ts or any(not (t > 0 and math.isfinite(t)) for t in ts):
                raise ValueError(f"QTConfig.constraints_ms[{h!r}] must be positive ms; got {ts}")
        object.__setattr__(self, "constraints_ms", cons)

    def constraints(self, hyperspace: str) -> tuple[float, ...]:
        """The constraints T of ``hyperspace`` (a scaled hyperspace falls back to its base)."""
        table = dict(self.constraints_ms)
        if hyperspace in table:
            return table[hyperspace]
        base = as_hyperspace(hyperspace).base
        if base in table:
            return table[base]
        raise KeyError(f"QTConfig has no latency constraints for {hyperspace!r}; have "
                       f"{sorted(table)} (set constraints_ms)")


@dataclass(frozen=True)
class QTPart:
    """The terms of one constraint T: P_T, L_T, lambda_T and score_T (§4.1 steps 3-6)."""

    constraint_ms: float
    n_feasible: int
    p_feasible: float  # P_T, eps included
    top_loss: float  # L_T
    penalty: float  # lambda_T
    score: float  # 1 / (lambda_T * L_T)


@dataclass(frozen=True, eq=False)
class QTSamples:
    """The N sampled subnets, in batch order: summed NSR, total latency (ms), resolution."""

    loss: np.ndarray
    latency_ms: np.ndarray
    resolution: np.ndarray


@dataclass(frozen=True, eq=False)
class QTResult:
    """Q-T score of one space: the total, its per-T parts and optionally the samples."""

    space: str
    score: float
    parts: tuple[QTPart, ...]
    n_samples: int
    other_latency_ms: dict[int, float] = field(default_factory=dict)
    samples: QTSamples | None = None

    def to_frame(self):
        """One row per constraint T (constraint_ms, n_feasible, p_feasible, top_loss, ...)."""
        df = pd.DataFrame([asdict(p) for p in self.parts])
        df.insert(0, "space", self.space)
        return df


def resolve_other_latency(other_latency: OtherLatency,
                          resolutions: tuple[int, ...]) -> np.ndarray:
    """``other_latency`` at each resolution as a float64 array; ValueError if missing/bad."""
    out = np.empty(len(resolutions), dtype=np.float64)
    for k, r in enumerate(resolutions):
        if isinstance(other_latency, Mapping):
            if r not in other_latency:
                raise ValueError(f"other_latency has no value for resolution {r}; it needs "
                                 f"every LUT resolution {list(resolutions)}")
            v = other_latency[r]
        elif callable(other_latency):
            v = other_latency(r)
        else:
            raise TypeError("other_latency must be a callable resolution -> ms or a "
                            f"{{resolution: ms}} mapping; got {type(other_latency).__name__}")
        v = float(v)
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"other_latency({r}) must be a finite latency >= 0 ms; got {v}")
        out[k] = v
    return out


def qt_score(tables: StageTables, space: SpaceChoice | str, other_latency: OtherLatency,
             config: QTConfig, rng: np.random.Generator, *,
             keep_samples: bool = False) -> QTResult:
    """Q-T score of ``space`` (book equation ``eq-qt-score``; paper-notes §4.1, steps 1-6).

    Why it is written this way: the reference draws, per batch of ``config.batch`` samples,
    one resolution uniformly, then per stage one LUT row at that resolution uniformly with
    replacement. The sample set is a multiset, so the draws are grouped by resolution here
    (one ``rng.integers`` call per stage and resolution, no Python loop over batches); the
    statistics are the same and the result is a pure function of the generator's state.
    Draw order: ``rng.integers(n_resolutions, size=n_batches)``, then for each resolution (in
    ``tables.resolutions`` order) and each stage 1..6, ``rng.integers(rows at r, size=samples
    at r)``. ``keep_samples`` returns the samples in batch order, e.g. for the latency/loss plot.
    """
    sp = space if isinstance(space, SpaceChoice) else SpaceChoice.decode(space)
    stage_tables = tables.for_space(sp)
    constraints = config.constraints(tables.hyperspace)
    other = resolve_other_latency(other_latency, tables.resolutions)
    n, batch = int(config.n_samples), int(config.batch)
    n_batches = -(-n // batch)
    sizes = np.full(n_batches, batch, dtype=np.int64)
    sizes[-1] = n - batch * (n_batches - 1)
    n_res = len(tables.resolutions)
    res_of_batch = rng.integers(n_res, size=n_batches)
    per_res = np.bincount(res_of_batch, weights=sizes, minlength=n_res).astype(np.int64)

    # nsr + 1j * latency: one gather and one add per stage give both sums, each summed in
    # stage order exactly as two float64 sums would be (real and imaginary parts never mix)
    both = np.empty(n, dtype=np.complex128)
    start = 0
    for k in range(n_res):
        m = int(per_res[k])
        if m == 0:
            continue
        seg = both[start:start + m]
        for i, tab in enumerate(stage_tables):
            rows = rng.integers(tab.counts[k], size=m)
            if i == 0:
                seg[:] = tab.packed[k][rows]
            else:
                seg += tab.packed[k][rows]
        seg.imag += other[k]
        start += m
    loss, lat = both.real, both.imag

    parts = []
    for T in constraints:
        feasible = lat <= T
        n_f = int(np.count_nonzero(feasible))
        p = n_f / n + config.eps
        if n_f == 0:
            top = float(config.no_feasible_loss)
        else:
            fl = loss[feasible]
            if n_f > config.top_k:
                fl = np.partition(fl, config.top_k - 1)[:config.top_k]
            top = float(np.sort(fl).mean())  # sorted: sum order independent of partition
        lam = max(1.0, (config.t / p) ** config.a)
        score = 1.0 / (lam * top) if top > 0 else math.inf
        parts.append(QTPart(T, n_f, p, top, lam, score))

    samples = None
    if keep_samples:
        res_idx = np.repeat(res_of_batch, sizes)
        order = np.argsort(res_idx, kind="stable")  # batch position of each grouped sample
        b_loss, b_lat = np.empty(n), np.empty(n)
        b_loss[order] = loss
        b_lat[order] = lat
        samples = QTSamples(b_loss, b_lat, np.asarray(tables.resolutions)[res_idx])
    return QTResult(sp.encode(), float(sum(p.score for p in parts)), tuple(parts), n,
                    dict(zip(tables.resolutions, other.tolist())), samples)


class QTScorer:
    """``space -> Q-T score``: the ``score_fn`` that :func:`aging_evolution` calls (§5).

    ``common_random_numbers=True`` (default) restarts the generator at ``seed`` for every
    space, so a space's score does not depend on when it is evaluated and two spaces are
    compared on the same resolution draws (less noise in the ranking). ``False`` shares one
    generator across calls, as the reference does (scores then depend on evaluation order).
    """

    def __init__(self, tables: StageTables, other_latency: OtherLatency,
                 config: QTConfig | None = None, seed: int = 0,
                 common_random_numbers: bool = True) -> None:
        self.tables = tables
        self.config = config or QTConfig()
        self.seed = seed
        self.common_random_numbers = common_random_numbers
        other = resolve_other_latency(other_latency, tables.resolutions)
        self.other_latency = dict(zip(tables.resolutions, other.tolist()))
        self._rng = np.random.default_rng(seed)

    def result(self, space: SpaceChoice | str, keep_samples: bool = False) -> QTResult:
        rng = (np.random.default_rng(self.seed) if self.common_random_numbers else self._rng)
        return qt_score(self.tables, space, self.other_latency, self.config, rng,
                        keep_samples=keep_samples)

    def __call__(self, space: SpaceChoice | str) -> float:
        return self.result(space).score


# ----------------------------------------------------------------------------- other latency

# Published block latencies of the onnx_lut (measured INT8, VNNI CPU; paper-notes §9.2), ms.
VNNI_FIRST_CONV_MS: dict[int, float] = {160: 0.409, 224: 0.786}  # FirstConvBlock 3->16
VNNI_FEATURE_MIX_MS: float = 0.287  # FeatureMix 1280->1920: midpoint of the 0.283-0.291 range
VNNI_LOGITS_MS: float = 0.169  # Logits 1920->1000 (the onnxruntime_int8 predictor: 0.16796)

#: Median latency_ms / mflops (ms per million MACs, §9.3) over every published LUT row of
#: (hyperspace, stage, block), all windows, per resolution; recomputed from the LUTs by
#: :func:`lut_ms_per_mmac` (a test checks these numbers against the data).
LUT_MS_PER_MMAC: dict[tuple[str, int, int], dict[int, float]] = {
    ("onnxw", 1, 3): {160: 0.01141, 192: 0.01100, 224: 0.01086},  # ResNet, stage1
    ("onnxw", 6, 1): {160: 0.01688, 192: 0.01364, 224: 0.01377},  # MBv2Res, stage6
    ("mobilew", 1, 1): {160: 0.08123, 192: 0.08880, 224: 0.08697},  # MBv2Res, stage1
    ("mobilew", 1, 3): {160: 0.02682, 192: 0.02951, 224: 0.02957},  # ResNet, stage1
    ("mobilew", 6, 1): {160: 0.03085, 192: 0.02806, 224: 0.02732},  # MBv2Res, stage6
}
OTHER_PARTS: tuple[str, ...] = ("first_conv", "stage0", "final_expand", "feature_mix", "logits")


def lut_ms_per_mmac(tables: StageTables, stage: int, block: int) -> dict[int, float]:
    """Median latency_ms / mflops of all rows of (stage, block), every window, per resolution."""
    n_w = tables.spec.window_counts[stage - 1]

    df = pd.concat([load_lut(tables.hyperspace, stage, block, w, root=tables.root)
                    for w in range(n_w)])
    ratio = (df["latency_ms"] / df["mflops"]).groupby(df["resolution"]).median()
    return {int(r): float(v) for r, v in ratio.items()}


def _macs(hs_name: str, r: int) -> dict[str, float]:
    """Million MACs of stage0 and final_expand of the min subnet of the all-block-0 space."""
    hs = as_hyperspace(hs_name)
    hw0, hw6 = math.ceil(r / 2), math.ceil(r / 32)
    cin = hs.stage("first_conv").widths[0]
    cout = hs.stage("stage0").widths[0]
    if hs.stage0.code == "ResNet":  # k3 bottleneck, hidden = make_divisible(e * cout)
        h = make_divisible(min(hs.stage0.expands) * cout)
        per_px = cin * h + 9 * h * h + h * cout
    elif hs.stage0.code == "MBv2":  # DW 3x3 + PW, e = 1: no expansion conv
        per_px = 9 * cin + cin * cout
    else:
        raise NotImplementedError(f"no MAC model for stage0 block {hs.stage0.code}")
    c6 = hs.stage("stage6").widths[0]  # window 0, min width
    return {"stage0": hw0 * hw0 * per_px / 1e6,
            "final_expand": hw6 * hw6 * c6 * hs.final_expand.width / 1e6}


@dataclass(frozen=True)
class OtherLatencyEstimate:
    """Latency (ms) of first_conv, stage0, final_expand, feature_mix, logits per resolution.

    Callable: ``est(r)`` is the total at resolution r, interpolated linearly in pixel count
    between the tabulated resolutions (ValueError outside them). ``how`` says where each part
    comes from; :meth:`to_frame` tabulates the parts for the book.
    """

    hyperspace: str
    parts: dict[int, dict[str, float]]
    how: dict[str, str]

    def __call__(self, resolution: int) -> float:
        rs = sorted(self.parts)
        if not rs[0] <= resolution <= rs[-1]:
            raise ValueError(f"{self.hyperspace} other-latency estimate covers resolutions "
                             f"{rs[0]}..{rs[-1]}; got {resolution}")
        totals = [sum(self.parts[r].values()) for r in rs]
        return float(np.interp(resolution ** 2, [r * r for r in rs], totals))

    def to_frame(self):
        df = pd.DataFrame(self.parts).T.rename_axis("resolution")[list(OTHER_PARTS)]
        df["total"] = df.sum(axis=1)
        return df


def paper_other_latency(hyperspace: str) -> OtherLatencyEstimate:
    """An ESTIMATE of lat_other(r) for ``onnxw`` or ``mobilew`` at r = 160, 192, 224 (§4.1).

    The reference uses the predicted latency of first_conv, stage0, final_expand,
    feature_mix and logits of the minimum subnet of the all-block-0 space (widths: stem 16,
    stage0 16, stage6 window 0 min width). Only four such block latencies are published
    (paper-notes §9.2, VNNI onnx_lut), so:

    * onnxw first_conv: the measured 0.409 ms (r160) and 0.786 ms (r224), linear in pixel
      count in between (0.786/0.409 = 1.92 ~ (224/160)^2 = 1.96: the stem scales with pixels).
    * onnxw feature_mix 0.287 ms and logits 0.169 ms: measured, independent of r (after GAP).
    * stage0 and final_expand: their MACs (computed from the block structure, §2.4) times the
      median ms-per-MMAC of published LUT rows of the nearest block type at the same stage
      depth and resolution (:data:`LUT_MS_PER_MMAC`): stage0 of onnxw (ResNet k3 e0.5) uses
      ResNet stage1 rows, stage0 of mobilew (MBv2 k3 e1) MBv2Res stage1 rows; final_expand
      (1x1 conv at r/32) uses MBv2Res stage6 rows of its own hyperspace.
    * mobilew (no Pixel 4 block latency is published): the three measured VNNI parts times a
      Pixel 4 / VNNI device factor = ratio of LUT ms-per-MMAC of the same block type and
      stage: ResNet stage1 (dense convs, ~2.4-2.7x) for first_conv, MBv2Res stage6 (small
      spatial size, ~2x at r224) for feature_mix and logits. This assumes the Pixel 4 core is
      as (in)efficient on the 3-channel stem and on GEMV as on the LUT blocks.

    Totals: onnxw ~1.1 ms (r160) to ~1.6 ms (r224); mobilew ~2.0 to ~3.8 ms.
    """
    if hyperspace not in ("onnxw", "mobilew"):
        raise ValueError(f"paper_other_latency covers the paper hyperspaces onnxw and mobilew; "
                         f"got {hyperspace!r}: pass measured other latencies instead")
    lut = LUT_MS_PER_MMAC
    parts: dict[int, dict[str, float]] = {}
    for r in (160, 192, 224):
        macs = _macs(hyperspace, r)
        px = (r * r - 160 ** 2) / (224 ** 2 - 160 ** 2)
        vnni_stem = VNNI_FIRST_CONV_MS[160] + px * (VNNI_FIRST_CONV_MS[224]
                                                     - VNNI_FIRST_CONV_MS[160])
        if hyperspace == "onnxw":
            p = {"first_conv": vnni_stem,
                 "stage0": macs["stage0"] * lut[("onnxw", 1, 3)][r],
                 "final_expand": macs["final_expand"] * lut[("onnxw", 6, 1)][r],
                 "feature_mix": VNNI_FEATURE_MIX_MS,
                 "logits": VNNI_LOGITS_MS}
        else:
            dense = lut[("mobilew", 1, 3)][r] / lut[("onnxw", 1, 3)][r]
            small = lut[("mobilew", 6, 1)][224] / lut[("onnxw", 6, 1)][224]
            p = {"first_conv": vnni_stem * dense,
                 "stage0": macs["stage0"] * lut[("mobilew", 1, 1)][r],
                 "final_expand": macs["final_expand"] * lut[("mobilew", 6, 1)][r],
                 "feature_mix": VNNI_FEATURE_MIX_MS * small,
                 "logits": VNNI_LOGITS_MS * small}
        parts[r] = {k: float(p[k]) for k in OTHER_PARTS}
    how = {
        "first_conv": "measured VNNI 160/224, linear in pixels"
                      + ("" if hyperspace == "onnxw" else " x Pixel4/VNNI ResNet-s1 ms/MMAC"),
        "stage0": "MACs x LUT ms/MMAC of "
                  + ("ResNet stage1" if hyperspace == "onnxw" else "MBv2Res stage1"),
        "final_expand": "MACs x LUT ms/MMAC of MBv2Res stage6",
        "feature_mix": "measured VNNI 0.283-0.291 midpoint"
                       + ("" if hyperspace == "onnxw" else " x Pixel4/VNNI MBv2-s6 ms/MMAC"),
        "logits": "measured VNNI 0.169"
                  + ("" if hyperspace == "onnxw" else " x Pixel4/VNNI MBv2-s6 ms/MMAC"),
    }
    return OtherLatencyEstimate(hyperspace, parts, how)
