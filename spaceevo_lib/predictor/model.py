"""Block-level latency predictors: one per device and hyperspace, both precisions.

A subnet's latency is predicted from its units' predicted latencies
(:mod:`spaceevo_lib.predictor.units`) by a *composition* model fitted on whole networks:

    whole_ms = a * sum(unit_ms) + b * weights_M + c * n_units + d * tensors_M   (eq-composition)

An isolated block is timed over and over with its weights hot in the core's cache, and pays a
runtime call (and, in INT8, a quantize/dequantize of its input and output) that a whole network
pays once. In a whole network every block's weights stream in from L3 or memory on every
inference: ``b`` is that cost per million weights (it comes out near the memory bandwidth),
``c`` the per-block isolation cost (usually negative: it is removed), ``d`` a cost per million
elements of the blocks' input and output tensors (what an isolated block pays at its
boundaries: onnxruntime converts FP32 tensors to and from its blocked NCHWc layout and INT8
ones to and from float, which a whole network does once), ``a`` what remains of a common
scale. The older form, one factor (``composition="scalar"``: the median of whole / sum of
units), cannot tell a small network from a large one; the chapter shows both. Four terms
fitted on a dozen networks can also chase their noise, so ``learned`` keeps them only where
they beat the one factor in leave-one-out error on the fitting networks
(:func:`composition_loo`), per precision.

Unit latencies come from a :class:`UnitRegressor` per precision; its families
(:data:`REGRESSORS`) are compared by cross-validation (:func:`compare_regressors`).

Saving keeps what made the predictor, not a pickle: the training tables (Parquet) and a JSON
of settings and composition terms. Loading refits, deterministically (fixed seeds), so a new
scikit-learn can never fail to read a saved predictor.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .._io import atomic_path, write_json
from .._version import __version__
from ..latency.protocol import PROTOCOL_VERSION, ProtocolMismatch, latency_column
from ..space.encoding import SpaceChoice, Subnet
from .units import (FEATURES, KERNEL_FEATURES, SpaceUnits, Unit, network_units, subnet_units,
                    unit_cost, unit_features)

PRECISIONS = ("fp32", "int8")
REGRESSORS = ("kernel", "kernel+gbr", "rf", "gbr")
UNIT_COLUMNS = Unit._fields
_KERNEL_COLS = [FEATURES.index(k) for k in KERNEL_FEATURES]


def make_regressor(family: str, seed: int = 0):
    """A fresh scikit-learn regressor for one model of ``family`` (see :class:`UnitRegressor`)."""
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor  # heavy: sklearn
    from sklearn.linear_model import LinearRegression  # heavy: sklearn
    if family == "rf":
        return RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1)
    if family in ("gbr", "residual"):
        return GradientBoostingRegressor(n_estimators=200, max_depth=2 if family == "residual"
                                         else 3, learning_rate=0.05, random_state=seed)
    if family == "kernel":
        return LinearRegression(positive=True)
    raise ValueError(f"regressor must be one of {', '.join(REGRESSORS)}; got {family!r}")


def units_frame(units: Iterable[Unit]) -> pd.DataFrame:
    return pd.DataFrame([u._asdict() for u in units], columns=list(UNIT_COLUMNS))


def frame_units(df: pd.DataFrame) -> list[Unit]:
    """Units from a table with the :class:`Unit` columns (e.g. a measurements table)."""
    cols = [df[c].tolist() for c in UNIT_COLUMNS]
    return [Unit(str(c), str(a), int(ci), int(co), int(k), float(e), int(s), int(hw), int(fe),
                 int(fm)) for c, a, ci, co, k, e, s, hw, fe, fm in zip(*cols)]


class UnitRegressor:
    """Latency of units for one precision; ``family`` says how (:data:`REGRESSORS`):

    * ``kernel``: one non-negative linear model over all units on their kernel features
      (MACs per convolution kind, elements per activation family, SE, adds, kernel count),
      fitted for relative error (weights 1/y^2). Its coefficients are per-kernel costs, e.g.
      ms per million depthwise MACs or per million hswish elements;
    * ``kernel+gbr``: that, times a gradient-boosted correction fitted on the log ratio of
      measured to linear-predicted latency (what the linear costs miss: shapes the kernels
      handle well or badly);
    * ``rf`` / ``gbr``: one random forest / gradient-boosting model per unit group (block
      code + activation) on all features, as nn-Meter fits one per kernel type; groups with
      fewer than ``min_group`` units use the pooled ``kernel`` model.
    """

    def __init__(self, family: str = "kernel+gbr", seed: int = 0, min_group: int = 5):
        if family not in REGRESSORS:
            raise ValueError(f"regressor must be one of {', '.join(REGRESSORS)}; got {family!r}")
        self.family, self.seed, self.min_group = family, seed, min_group
        self.linear = None
        self.residual = None
        self.groups: dict[str, object] = {}

    def fit(self, units: Sequence[Unit], y_ms: np.ndarray) -> UnitRegressor:
        y = np.asarray(y_ms, dtype=np.float64)
        if len(units) != len(y) or not len(y):
            raise ValueError(f"need one latency per unit and at least one; got {len(units)} "
                             f"units and {len(y)} latencies")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("latencies must be finite and > 0 ms")
        x = unit_features(units)
        self.linear = make_regressor("kernel").fit(x[:, _KERNEL_COLS], y, sample_weight=y ** -2.0)
        self.residual, self.groups = None, {}
        if self.family == "kernel+gbr" and len(y) >= self.min_group:
            base = self._linear(x)
            self.residual = make_regressor("residual", self.seed).fit(np.log1p(x),
                                                                      np.log(y / base))
        elif self.family in ("rf", "gbr"):
            g = np.array([u.group for u in units])
            for name in sorted(set(g)):
                m = g == name
                if m.sum() >= self.min_group:
                    self.groups[name] = make_regressor(self.family, self.seed).fit(x[m], y[m])
        return self

    def _linear(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(self.linear.predict(x[:, _KERNEL_COLS]), 1e-4)

    @property
    def kernel_costs(self) -> dict[str, float]:
        """The linear model's cost per kernel feature (ms per million MACs/elements)."""
        return {k: float(c) * 1e6 for k, c in zip(KERNEL_FEATURES, self.linear.coef_)}

    def predict(self, units: Sequence[Unit]) -> np.ndarray:
        if self.linear is None:
            raise RuntimeError("fit the regressor first")
        x = unit_features(units)
        out = self._linear(x)
        if self.residual is not None:
            out = out * np.exp(self.residual.predict(np.log1p(x)))
        if self.groups:
            g = np.array([u.group for u in units])
            for name, model in self.groups.items():
                m = g == name
                if m.any():
                    out[m] = model.predict(x[m])
        return np.maximum(out, 1e-4)


COMPOSITIONS = ("learned", "scalar")
_PLAIN = (1.0, 0.0, 0.0, 0.0)  # the plain sum of units
#: The composition model's terms, in the order of its coefficients (eq-composition).
COMPOSITION_TERMS = ("sum_units_ms", "weights_m", "n_units", "tensors_m")


def composition_loo(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Leave-one-out RMSPE (%) of the two composition forms on networks with terms ``x``
    (:data:`COMPOSITION_TERMS`) and measured latency ``y``: ``four_terms`` (least squares on
    relative error) and ``one_factor`` (the median of measured over summed blocks)."""
    n = len(y)
    rel4, rel1 = np.empty(n), np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        c = np.linalg.lstsq(x[keep] / y[keep, None], np.ones(n - 1), rcond=None)[0]
        rel4[i] = max(float(x[i] @ c), 0.1 * x[i, 0]) / y[i] - 1  # the prediction's floor
        rel1[i] = float(np.median(y[keep] / x[keep, 0])) * x[i, 0] / y[i] - 1
    return {"four_terms": float(100 * np.sqrt(np.mean(rel4 ** 2))),
            "one_factor": float(100 * np.sqrt(np.mean(rel1 ** 2)))}


def compare_regressors(units_table: pd.DataFrame, families: Sequence[str] = REGRESSORS,
                       folds: int = 5, seed: int = 0, min_group: int = 5,
                       stat: str = "min") -> pd.DataFrame:
    """K-fold cross-validation of each family on measured units, per precision.

    Returns one row per (family, precision) with unit-level RMSE (ms), RMSPE (%) and the share
    within +-10 %. The predictor uses the family with the lowest RMSE: a network's latency is a
    sum of blocks, dominated by its slowest ones, so absolute errors on large blocks matter more
    than relative errors on tiny ones.
    """
    from sklearn.model_selection import KFold  # heavy: sklearn
    units = frame_units(units_table)
    rows = []
    n_splits = max(2, min(folds, len(units)))
    for prec in PRECISIONS:
        y = units_table[latency_column(prec, stat)].to_numpy(float)
        for fam in families:
            pred = np.empty_like(y)
            for tr, te in KFold(n_splits, shuffle=True, random_state=seed).split(y):
                reg = UnitRegressor(fam, seed, min_group).fit([units[i] for i in tr], y[tr])
                pred[te] = reg.predict([units[i] for i in te])
            m = error_metrics(pred, y)
            rows.append({"family": fam, "precision": prec, "units": len(y),
                         "unit_rmse_ms": m["rmse_ms"], "unit_rmspe_pct": m["rmspe_pct"],
                         "unit_within_10pct": m["within_10pct"]})
    return pd.DataFrame(rows)


def best_family(comparison: pd.DataFrame) -> str:
    """The family with the lowest cross-validated unit RMSE, averaged over precisions."""
    return str(comparison.groupby("family")["unit_rmse_ms"].mean().idxmin())


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a share (in %): honest at small n and at shares near 100 %,
    where the normal approximation's interval would reach past 100 %."""
    if n <= 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    share = hits / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def error_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """nn-Meter's metrics: RMSE (ms), RMSPE (%), shares within +-5/10/15 % (in %), and the
    95 % Wilson interval of the +-10 % share (25 networks: one miss moves it 4 points)."""
    p, t = np.asarray(pred, float), np.asarray(true, float)
    rel = (p - t) / t
    low, high = wilson_interval(int(np.sum(np.abs(rel) <= 0.10)), len(t))
    return {"n": int(len(t)), "rmse_ms": float(np.sqrt(np.mean((p - t) ** 2))),
            "rmspe_pct": float(100 * np.sqrt(np.mean(rel ** 2))),
            **{f"within_{b}pct": float(100 * np.mean(np.abs(rel) <= b / 100))
               for b in (5, 10, 15)},
            "within_10pct_ci_low": low, "within_10pct_ci_high": high}


def saved_name(device: str, hyperspace: str) -> str:
    """The file stem a predictor of ``device`` for ``hyperspace`` is saved under."""
    return f"predictor-{device}@{hyperspace}"


class LatencyPredictor:
    """Latency of subnets of ``hyperspace`` on ``device``, FP32 and INT8, in ms.

    ``stat`` is the measured statistic it learns and predicts (:data:`STATS`, from
    :mod:`spaceevo_lib.latency.protocol`): ``min`` (the fastest run of any visit),
    ``median_of_min`` or ``median``. ``composition`` is ``learned`` (eq-composition, fitted on
    whole networks) or ``scalar`` (one factor).

    ``predict(subnets, "int8", space=...)`` is the search API: a batch of subnet descriptions
    (strings or :class:`~spaceevo_lib.space.Subnet`) of one candidate space, or
    ``(space, subnet)`` pairs, in; a float array out. Unit predictions are cached, so a
    search that revisits blocks pays only for sums.
    """

    def __init__(self, device: str, hyperspace: str, family: str = "kernel+gbr", seed: int = 0,
                 min_group: int = 5, stat: str = "min", composition: str = "learned"):
        UnitRegressor(family)  # validates the family
        latency_column("fp32", stat)  # validates the statistic
        if composition not in COMPOSITIONS:
            raise ValueError(f"composition must be one of {COMPOSITIONS}; got {composition!r}")
        self.device, self.hyperspace, self.family, self.stat = device, hyperspace, family, stat
        self.seed, self.min_group, self.composition_kind = seed, min_group, composition
        self.regressors: dict[str, UnitRegressor] = {}
        #: per precision: coefficients of COMPOSITION_TERMS (scalar: (factor, 0, 0, 0))
        self.composition: dict[str, tuple[float, ...]] = {p: _PLAIN for p in PRECISIONS}
        #: per precision: the composition's form and, for ``learned``, the leave-one-out RMSPE
        #: (%) of both forms on the fitting networks
        self.composition_loo: dict[str, dict] = {}
        self.units_table: pd.DataFrame | None = None
        self.whole_table: pd.DataFrame | None = None
        self._cache: dict[str, dict[Unit, float]] = {p: {} for p in PRECISIONS}
        self._sizes: dict[Unit, tuple[float, float]] = {}

    @property
    def name(self) -> str:
        return f"{self.device}@{self.hyperspace}"

    # --- fitting

    def fit(self, units_table: pd.DataFrame, whole_table: pd.DataFrame | None = None
            ) -> LatencyPredictor:
        """Fit on measured units (columns of :class:`Unit` + the latency columns of
        :func:`latency_column`); ``whole_table`` (``space``, ``subnet``, the same latency
        columns; torchvision rows as in :func:`~.units.network_units`) fits the
        composition; without it the prediction is the plain sum of units."""
        self.units_table = units_table.reset_index(drop=True)
        self.whole_table = None if whole_table is None else whole_table.reset_index(drop=True)
        units = frame_units(self.units_table)
        for p in PRECISIONS:
            self.regressors[p] = UnitRegressor(self.family, self.seed, self.min_group).fit(
                units, self.units_table[latency_column(p, self.stat)].to_numpy(float))
            self._cache[p] = {}
            self.composition[p] = _PLAIN
        if self.whole_table is not None and len(self.whole_table):
            nets = [network_units(sp, sub) for sp, sub in zip(self.whole_table["space"],
                                                             self.whole_table["subnet"])]
            for p in PRECISIONS:
                y = self.whole_table[latency_column(p, self.stat)].to_numpy(float)
                self.composition[p] = self._fit_composition(self.terms(nets, p), y, p)
        return self

    def _fit_composition(self, x: np.ndarray, y: np.ndarray, precision: str = "int8"
                         ) -> tuple[float, ...]:
        """Least squares on relative error (each network counts alike, small or large); one
        factor when asked, or when there are fewer than two networks per term.

        ``learned`` keeps the four terms only where they generalise: both forms are scored by
        leave-one-out relative error on the fitting networks (never the held-out ones), and the
        one factor wins ties and wherever the four terms do worse. With ten or so fitting
        networks the four-term fit can chase their noise (two default runs here gave
        held-out shares of 100 % and 65 % within +-10 % for the same device and scale, while
        one factor gave 94 % and 100 %); ``composition_loo`` keeps both scores and the choice.
        """
        scalar = (float(np.median(y / x[:, 0])), *_PLAIN[1:])
        if self.composition_kind == "scalar" or len(y) < 2 * len(COMPOSITION_TERMS):
            self.composition_loo[precision] = {"form": "one factor"}
            return scalar
        coef = np.linalg.lstsq(x / y[:, None], np.ones(len(y)), rcond=None)[0]
        loo = composition_loo(x, y)
        better = loo["four_terms"] < loo["one_factor"]
        self.composition_loo[precision] = {**loo,
                                           "form": "four terms" if better else "one factor"}
        return tuple(float(c) for c in coef) if better else scalar

    def terms(self, networks: Sequence[Sequence[Unit]], precision: str) -> np.ndarray:
        """(networks, 4) array of the composition terms (:data:`COMPOSITION_TERMS`): predicted
        sum of units (ms), weights (millions), number of units, elements of the units' input and
        output tensors (millions)."""
        n = np.array([len(u) for u in networks], dtype=np.float64)
        if not len(networks):
            return np.empty((0, len(COMPOSITION_TERMS)))
        flat = [u for us in networks for u in us]
        vals = self.predict_units(flat, precision)
        for u in dict.fromkeys(flat):
            if u not in self._sizes:
                c = unit_cost(u)
                self._sizes[u] = (c["params"] / 1e6, (c["in_elems"] + c["out_elems"]) / 1e6)
        sizes = np.array([self._sizes[u] for u in flat], dtype=np.float64).reshape(-1, 2)
        starts = np.r_[0, np.cumsum(n[:-1])].astype(int)
        return np.c_[np.add.reduceat(vals, starts), np.add.reduceat(sizes[:, 0], starts), n,
                     np.add.reduceat(sizes[:, 1], starts)]

    # --- prediction

    def _check_precision(self, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
        if precision not in self.regressors:
            raise RuntimeError(f"predictor {self.name} is not fitted")

    def predict_units(self, units: Sequence[Unit], precision: str) -> np.ndarray:
        self._check_precision(precision)
        cache = self._cache[precision]
        new = [u for u in dict.fromkeys(units) if u not in cache]
        if new:
            cache.update(zip(new, self.regressors[precision].predict(new).tolist()))
        return np.fromiter((cache[u] for u in units), dtype=np.float64, count=len(units))

    def _units_of(self, subnets, space) -> list[list[Unit]]:
        if space is not None:  # one space: read its allowed values once
            sp = space if isinstance(space, SpaceChoice) else SpaceChoice.decode(space)
            self._check_hyperspace(sp)
            units_of = SpaceUnits(sp)
            return [units_of(s) for s in subnets]
        out = []
        for item in subnets:
            if not isinstance(item, tuple) or len(item) != 2:
                raise TypeError("without space=, give (space, subnet) pairs; got "
                                f"{type(item).__name__}")
            sp, sub = item
            sp = sp if isinstance(sp, SpaceChoice) else SpaceChoice.decode(sp)
            self._check_hyperspace(sp)
            out.append(subnet_units(sp, sub))
        return out

    def _check_hyperspace(self, sp: SpaceChoice) -> None:
        if sp.hyperspace != self.hyperspace:
            raise ValueError(f"predictor {self.name} covers hyperspace {self.hyperspace!r} "
                             f"only; got a subnet of {sp.hyperspace!r} (load the predictor "
                             f"built for that hyperspace)")

    def predict(self, subnets: Iterable[Subnet | str | tuple], precision: str = "int8",
                space: SpaceChoice | str | None = None) -> np.ndarray:
        """Predicted latency (ms) of each subnet; every description is validated against the
        hyperspace first (EncodingError names the offending field, e.g. a resolution the
        hyperspace does not have)."""
        self._check_precision(precision)
        return self.predict_unit_lists(self._units_of(subnets, space), precision)

    def predict_unit_lists(self, networks: Sequence[Sequence[Unit]], precision: str = "int8"
                           ) -> np.ndarray:
        """Predicted latency (ms) of networks given as their units (e.g. a torchvision
        baseline from :func:`~spaceevo_lib.predictor.units.baseline_units`)."""
        self._check_precision(precision)
        if not len(networks):
            return np.empty(0)
        x = self.terms(networks, precision)
        # never below a tenth of the plain sum: a fitted negative term must not make a tiny
        # network free
        return np.maximum(x @ np.asarray(self.composition[precision]), 0.1 * x[:, 0])

    def additive_ms(self, parts: Sequence[Sequence[Unit]], precision: str = "int8"
                    ) -> np.ndarray:
        """Latency (ms) of network *parts* (e.g. one stage's units), such that the parts of a
        network add up to its predicted latency: the composition is linear in its terms and
        every term is a sum over units (only the floor of :meth:`predict_unit_lists` is not
        additive). The per-stage latency column of the block-wise tables."""
        self._check_precision(precision)
        if not len(parts):
            return np.empty(0)
        return self.terms(parts, precision) @ np.asarray(self.composition[precision])

    # --- range

    #: The configuration a unit's features come from, checked against the fitted units.
    RANGE_FEATURES = ("cin", "cout", "hw", "k", "e")

    def out_of_range(self, parts: Sequence[Sequence[Unit]]) -> list[str]:
        """Why each unit outside what this predictor was fitted on is outside (a block type it
        never saw, or a feature beyond that block type's fitted range); [] when all are in."""
        if self.units_table is None:
            raise RuntimeError("fit the predictor before asking about its range")
        fitted = self.units_table.groupby("code")[list(self.RANGE_FEATURES)].agg(["min", "max"])
        out, seen = [], set()
        for u in (u for p in parts for u in p):
            if u in seen:
                continue
            seen.add(u)
            if u.code not in fitted.index:
                out.append(f"{self.name} was fitted on no {u.code} block (fitted: "
                           f"{', '.join(fitted.index)})")
                continue
            for f in self.RANGE_FEATURES:
                lo, hi, v = fitted.loc[u.code, (f, "min")], fitted.loc[u.code, (f, "max")], \
                    getattr(u, f)
                if not lo <= v <= hi:
                    out.append(f"{self.name}: a {u.code} block with {f} = {v:g} is outside "
                               f"the fitted range of {f} for {u.code} blocks ({lo:g}-{hi:g})")
        return out

    def check_range(self, parts: Sequence[Sequence[Unit]]) -> None:
        """ValueError naming the first units outside the fitted range (:meth:`out_of_range`):
        for callers that must not extrapolate, e.g. tables priced on another device."""
        bad = self.out_of_range(parts)
        if bad:
            more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
            raise ValueError("; ".join(bad[:3]) + more)

    # --- persistence

    def save(self, folder: Path | str, name: str | None = None) -> Path:
        """Write ``<name>.json`` (settings, composition) and the two training tables."""
        if self.units_table is None:
            raise RuntimeError("fit the predictor before saving it")
        folder = Path(folder)
        stem = name or saved_name(self.device, self.hyperspace)
        folder.mkdir(parents=True, exist_ok=True)
        for kind, table in (("units", self.units_table), ("whole", self.whole_table)):
            if table is not None:
                with atomic_path(folder / f"{stem}-{kind}.parquet") as tmp:
                    table.to_parquet(tmp, index=False)
        meta = {"device": self.device, "hyperspace": self.hyperspace, "family": self.family,
                "stat": self.stat, "composition_kind": self.composition_kind,
                "seed": self.seed, "min_group": self.min_group,
                "composition": {p: dict(zip(COMPOSITION_TERMS, c))
                                for p, c in self.composition.items()},
                "whole": self.whole_table is not None, "protocol_version": PROTOCOL_VERSION,
                "spaceevo_lib": __version__,
                "note": "refit from the tables on load (no pickles): see predictor.model"}
        return write_json(folder / f"{stem}.json", meta)

    @classmethod
    def load(cls, folder: Path | str, name: str) -> LatencyPredictor:
        """The predictor saved as ``name`` in ``folder``, refitted from its tables."""
        folder = Path(folder)
        path = folder / f"{name}.json"
        if not path.exists():
            have = sorted(p.stem for p in folder.glob("predictor-*.json"))
            raise FileNotFoundError(f"no saved predictor {name!r} in {folder}; saved: "
                                    f"{', '.join(have) or 'none (run the predictor chapter)'}")
        meta = json.loads(path.read_text())
        if meta.get("protocol_version") != PROTOCOL_VERSION:
            raise ProtocolMismatch(
                f"saved predictor {path} was trained on latencies of timing protocol version "
                f"{meta.get('protocol_version', 1)}; this library's is {PROTOCOL_VERSION}. "
                f"Rerun the predictor chapter (its old measurement tables are refused too).")
        units = pd.read_parquet(folder / f"{name}-units.parquet")
        whole = pd.read_parquet(folder / f"{name}-whole.parquet") if meta["whole"] else None
        return cls(meta["device"], meta["hyperspace"], meta["family"], meta["seed"],
                   meta["min_group"], meta["stat"], meta["composition_kind"]).fit(units, whole)
