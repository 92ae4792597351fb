"""The paper's published artifacts: block lookup tables, search results, one measured latency.

From ``microsoft/Moonlit`` (folder ``SpaceEvo/``, MIT licence) at the commit pinned in
``configs/reference_manifest.json``, which also holds every file's sha256. They live in
``<data>/spaceevo-reference/`` and are never copied into the repository.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Sequence

import pandas as pd
import yaml

from .._io import file_hash
from ..settings import data_dir
from .errors import CorruptDataError, MissingDataError
from .imagenette import how_to_get

NAME = "spaceevo-reference"
LUT_COLUMNS = ("arch", "input_shape", "nsr", "mflops", "mparams", "latency_ms")


@functools.cache
def manifest() -> dict:
    """Pinned upstream commit, paths and sha256 of every reference file."""
    text = resources.files("spaceevo_lib.configs").joinpath("reference_manifest.json").read_text()
    return json.loads(text)


def reference_dir(root: Path | None = None) -> Path:
    return (root or data_dir()) / NAME


def reference_file(relpath: str, root: Path | None = None, verify: bool = False) -> Path:
    """Path of one reference file; raises with the two ways to get it when missing."""
    path = reference_dir(root) / relpath
    if not path.is_file():
        raise MissingDataError(
            f"The paper's reference artifact {relpath} is missing: {path} does not exist.\n"
            + how_to_get(f"{NAME}/{relpath}", NAME))
    if verify:
        want = manifest()["files"][relpath]["sha256"]
        got = file_hash(path)
        if got != want:
            raise CorruptDataError(
                f"{path} has sha256 {got}, expected {want} (upstream "
                f"{manifest()['repository']}@{manifest()['commit'][:10]}). Delete it and get a "
                "good copy. " + how_to_get(f"{NAME}/{relpath}", NAME))
    return path


def verify_reference(root: Path | None = None) -> int:
    """Check every reference file against the manifest; returns the number checked."""
    files = manifest()["files"]
    for rel in files:
        reference_file(rel, root, verify=True)
    return len(files)


def lut_files(hyperspace: str, root: Path | None = None) -> list[str]:
    """Relative paths of the published LUT CSVs of a hyperspace (``onnxw`` or ``mobilew``)."""
    prefix = f"block_lut/{hyperspace}/"
    out = sorted(p for p in manifest()["files"] if p.startswith(prefix))
    if not out:
        known = sorted({p.split("/")[1] for p in manifest()["files"] if p.startswith("block_lut/")})
        raise KeyError(f"no published LUT for hyperspace {hyperspace!r}; known: {known}")
    return out


def lut_path(hyperspace: str, stage: int, block: int, window: int,
             root: Path | None = None) -> Path:
    """The checked path of one published LUT ``stage{stage}_{block}_{window}.csv`` (read it
    with :func:`read_lut_csv`, or with :func:`spaceevo_lib.search.lut.load_lut`, which knows
    the hyperspace's strides)."""
    rel = f"block_lut/{hyperspace}/stage{stage}_{block}_{window}.csv"
    if rel not in manifest()["files"]:
        raise KeyError(f"no published LUT {rel}; see lut_files({hyperspace!r})")
    return reference_file(rel, root)


def read_lut_csv(path: Path, stride_before: int, extra_latency: Sequence[str] | None = None):
    """A LUT file in the published row format (no header; one sub-stage per row:
    ``arch, 1xCINxHxW, nsr, MFLOPs, Mparams, INT8 ms``) as a DataFrame with columns ``arch``
    (``k#w#e`` per block joined by ``_``), ``depth``, ``cin``, ``hw`` (stage input side),
    ``resolution`` (network input), ``nsr``, ``mflops``, ``mparams``, ``latency_ms``.

    The published files leave the resolution implicit (``hw`` times the stride before the
    stage, ``stride_before``); tables this study builds at 24-32 px, where late stages have
    the same side at several resolutions, add it as a seventh column, which is read when
    present; after it, one INT8 latency column per further device (this study's tables priced
    on a second device, :func:`spaceevo_lib.blockkd.tables.price_tables`), read as
    ``latency_ms_<device>`` for the devices ``extra_latency`` names (``latency_ms_2``, ...
    when it is None)."""
    df = pd.read_csv(path, header=None)
    n = len(LUT_COLUMNS)
    n_extra = max(0, df.shape[1] - n - 1)
    names = [f"latency_ms_{i + 2}" for i in range(n_extra)] if extra_latency is None \
        else [f"latency_ms_{d}" for d in extra_latency]
    if df.shape[1] < n or len(names) != n_extra:
        raise CorruptDataError(f"{path}: {df.shape[1]} columns; expected {LUT_COLUMNS} "
                               "(and optionally the resolution"
                               + (f", then latency on {', '.join(extra_latency)})"
                                  if extra_latency else ")"))
    df.columns = list(LUT_COLUMNS) + (["res"] if df.shape[1] > n else []) + names
    if df.isna().any().any() or len(df) == 0:
        raise CorruptDataError(f"{path}: empty or malformed rows (expected {LUT_COLUMNS})")
    shape = df.pop("input_shape").str.split("x", expand=True).astype(int)
    res = df.pop("res").astype(int) if "res" in df else shape[2] * stride_before
    df.insert(1, "depth", df["arch"].str.count("_") + 1)
    df.insert(2, "cin", shape[1])
    df.insert(3, "hw", shape[2])
    df.insert(4, "resolution", res)
    return df


def load_search_result(root: Path | None = None) -> dict:
    """The published spaces and SEQnet encodings (``search_result.yaml``)."""
    return yaml.safe_load(reference_file("search_result.yaml", root).read_text())


def load_reference_latency(root: Path | None = None):
    """The release's one measured latency: SEQnet@vnni-A0 FP32 / INT8 ms and speedup."""
    df = pd.read_csv(reference_file("onnx_latency.csv", root), header=None,
                     names=["model", "fp32_ms", "int8_ms", "speedup"])
    return df
