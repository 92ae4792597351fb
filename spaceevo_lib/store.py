"""The artifact store: each chapter's results, per profile, written atomically and reused.

Layout (``runs/`` is ``SPACEEVO_RUNS_DIR``, default ``<project>/runs``)::

    runs/<profile>/<chapter>/
        config.json            parameters, library version, git commit, package versions
        summary.json           headline numbers: [{"name", "value", "unit", "paper"}, ...]
        <name>.parquet|.csv    tables          <name>.png      figures
        <name>.json            small results   <name>.pt       tensors / state dicts
        <name>.meta.json       the cache key a result was computed from

Later chapters read an earlier chapter's results through that chapter's reader in
:mod:`spaceevo_lib.chapters` (``load_results``, ``load_measurements``, ``load_predictor``), which
reads with :meth:`Run.load`.

Caching: a rebuild with unchanged inputs recomputes nothing. Three mechanisms, one rule (a
stored result is reused only when everything it was made from is unchanged):

* :meth:`Run.cached`: a result beside ``<name>.meta.json``, the digest of its key (the
  inputs the caller names + the library version); another key recomputes it.
* latency jobs (:mod:`spaceevo_lib.latency.jobs`): one record per job, keyed by the builder's
  registered name, its spec, input shape, device options, timing protocol and library
  version; a table appends only the jobs whose key it lacks.
* block-wise distillation jobs (:mod:`spaceevo_lib.blockkd.jobs`): a job folder keyed by the
  student settings, the job version and the teacher's checkpoints; a finished job leaves
  ``done.json`` and is skipped.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from ._io import atomic_write, stable_hash, write_json
from ._version import __version__
from .config import ChapterConfig, check_profile, get_chapter
from .settings import project_root, runs_dir

SUMMARY_FIELDS = ("name", "value", "unit", "paper")
#: Optional record fields: ``artifact``, the file a record was measured on, relative to the
#: run folder (every deployed model file's accuracy and latency records name it);
#: ``encoding``, the space a record is about, where its name carries a short label.
OPTIONAL_FIELDS = ("artifact", "encoding")
_KINDS = {"parquet": ".parquet", "csv": ".csv", "json": ".json", "torch": ".pt"}
_RECORDED_PACKAGES = ("numpy", "pandas", "torch", "torchvision", "onnx", "onnxruntime",
                      "tensorflow-cpu", "ai-edge-litert", "scikit-learn", "papermill",
                      "jupyter-book")


class MissingResultError(FileNotFoundError):
    """A result that a chapter needs from an earlier chapter has not been produced yet."""


@dataclass(frozen=True)
class Run:
    """The result folder of one chapter at one profile."""

    chapter: str
    profile: str
    root: Path | None = None  # default: settings.runs_dir()

    def __post_init__(self) -> None:
        get_chapter(self.chapter)
        check_profile(self.profile)

    @classmethod
    def for_config(cls, cfg: ChapterConfig, root: Path | None = None) -> Run:
        """The run of a validated chapter config; records the config in ``config.json``."""
        run = cls(cfg.chapter, cfg.profile, root)
        write_json(run.path / "config.json", {
            "chapter": cfg.chapter, "params": cfg.as_dict(), "spaceevo_lib": __version__,
            "git_commit": _git_commit(), "python": platform.python_version(),
            "packages": _package_versions(),
        })
        return run

    @property
    def path(self) -> Path:
        return Path(self.root or runs_dir()) / self.profile / self.chapter

    def file(self, name: str, kind: str) -> Path:
        return self.path / f"{name}{_KINDS[kind]}"

    # ---- writing and reading -------------------------------------------------------------
    def save(self, obj: Any, name: str, kind: str = "parquet") -> Path:
        """Write a DataFrame (parquet/csv), a JSON-able object (json) or tensors (torch)."""
        if kind == "parquet":
            return atomic_write(self.file(name, kind), lambda p: obj.to_parquet(p, index=False))
        if kind == "csv":
            return atomic_write(self.file(name, kind), lambda p: obj.to_csv(p, index=False))
        if kind == "json":
            return write_json(self.file(name, kind), obj)
        if kind == "torch":
            import torch  # heavy: torch
            return atomic_write(self.file(name, kind), lambda p: torch.save(obj, p))
        raise ValueError(f"unknown kind {kind!r}; allowed: {', '.join(_KINDS)}")

    def load(self, name: str, kind: str = "parquet") -> Any:
        """Read a stored result; says which chapter to run when it is missing."""
        path = self.file(name, kind)
        if not path.is_file():
            raise MissingResultError(
                f"{path} does not exist: run the chapter {self.chapter!r} at profile "
                f"{self.profile!r} first (`spaceevo chapter {self.chapter} -p profile "
                f"{self.profile}`, or `make book PROFILE={self.profile}`)"
            )
        if kind in ("parquet", "csv"):
            return pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path)
        if kind == "json":
            return json.loads(path.read_text())
        import torch  # heavy: torch
        return torch.load(path, weights_only=True)

    def save_figure(self, fig: Any, name: str, dpi: int = 120) -> None:
        """Write ``<name>.png``; returns nothing so that a notebook cell shows the figure once."""
        atomic_write(self.path / f"{name}.png",
                     lambda p: fig.savefig(p, format="png", dpi=dpi, bbox_inches="tight"))

    def cached(self, name: str, compute: Callable[[], Any], key: Mapping[str, Any],
               kind: str = "parquet", reuse: Callable[[Any], bool] | None = None) -> Any:
        """Return the stored result ``name`` if it was made from ``key``; else compute and store.

        ``key`` holds everything the result depends on (parameters, input checksums); the
        library version is added to it. A result and its key are written separately, each
        atomically, the result first, so a crash never leaves a key that vouches for a stale
        or missing result. ``reuse``: a stored result is used only if it says yes (e.g.
        latency timed while the CPU was busy is timed again on the next build).
        """
        full_key = {"key": dict(key), "spaceevo_lib": __version__, "kind": kind}
        digest = stable_hash(full_key)
        meta = self.path / f"{name}.meta.json"
        if self.file(name, kind).is_file() and meta.is_file():
            if json.loads(meta.read_text()).get("digest") == digest:
                value = self.load(name, kind)
                if reuse is None or reuse(value):
                    return value
        meta.unlink(missing_ok=True)
        value = compute()
        self.save(value, name, kind)
        write_json(meta, {"digest": digest, **full_key})
        return value

    # ---- the chapter's headline numbers ----------------------------------------------------
    def write_summary(self, records: list[Mapping[str, Any]]) -> Path:
        """Write ``summary.json``: records ``{"name", "value", "unit", "paper"}``."""
        clean = [check_record(r) for r in records]
        names = [r["name"] for r in clean]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"summary names must be unique; repeated: {sorted(dup)}")
        return write_json(self.path / "summary.json", clean)

    def read_summary(self) -> list[dict[str, Any]]:
        return self.load("summary", "json")

    def finished_params(self, marker: str = "summary.json") -> dict[str, Any]:
        """The parameters this run was made with, for a later chapter that reads it; when
        ``marker`` (the file the chapter writes last that the reader needs) is missing,
        MissingResultError names the chapter to run first."""
        if not (self.path / marker).is_file():
            title = get_chapter(self.chapter).title
            raise MissingResultError(
                f"the chapter {title!r} has not run at {self.profile} (no "
                f"{self.path / marker}): spaceevo chapter {self.chapter} -p profile "
                f"{self.profile}")
        return json.loads((self.path / "config.json").read_text())["params"]


def record(name: str, value: Any, unit: str, paper: float | None = None) -> dict[str, Any]:
    """One summary record; ``paper`` is the paper's value where one exists."""
    return check_record({"name": name, "value": value, "unit": unit, "paper": paper})


def check_record(r: Mapping[str, Any]) -> dict[str, Any]:
    if not set(SUMMARY_FIELDS) <= set(r) <= set(SUMMARY_FIELDS + OPTIONAL_FIELDS):
        raise ValueError(f"summary record needs exactly {SUMMARY_FIELDS} (optionally "
                         f"{OPTIONAL_FIELDS}); got {sorted(r)}")
    if "artifact" in r and not (isinstance(r["artifact"], str) and r["artifact"]
                                and not Path(r["artifact"]).is_absolute()):
        raise ValueError(f"summary {r.get('name')!r}: artifact must be a path relative to the "
                         f"run folder; got {r['artifact']!r}")
    if not isinstance(r["name"], str) or not r["name"]:
        raise ValueError(f"summary record name must be a non-empty string; got {r['name']!r}")
    out = dict(r)
    for f in ("value", "paper"):
        v = out[f]
        if hasattr(v, "item"):  # numpy scalar
            v = out[f] = v.item()
        if v is not None and not isinstance(v, (int, float, str, bool)):
            raise ValueError(f"summary {r['name']!r}: {f} must be a number, string or null")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"summary {r['name']!r}: {f} is not finite ({v})")
    if out["value"] is None and out["unit"] != "verdict":  # (a verdict may be "not tested")
        raise ValueError(f"summary {r['name']!r}: value is missing")
    return out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(),
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
