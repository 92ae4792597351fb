"""The paper's reference values (``configs/paper_reference.yaml``), for side-by-side tables.

These are the only typed-in numbers of the book; chapters look them up here by name so that
each measured number can sit beside the paper's.
"""

from __future__ import annotations

import functools
from importlib import resources

import pandas as pd
import yaml


@functools.cache
def paper_reference() -> dict:
    """The whole reference file: source, setup, claims, Table 1, the code release's latency."""
    text = resources.files("spaceevo_lib.configs").joinpath("paper_reference.yaml").read_text()
    return yaml.safe_load(text)


def paper_source() -> dict:
    return dict(paper_reference()["source"])


def paper_setup(key: str) -> str:
    """The paper's setting for one aspect (dataset, devices, training), as a sentence."""
    setup = paper_reference()["setup"]
    if key not in setup:
        raise KeyError(f"unknown setup aspect {key!r}; known: {sorted(setup)}")
    return setup[key]["paper"]


def paper_table1():
    """The paper's Table 1 as a DataFrame (device, model, INT8/FP32 top-1, INT8 ms, speedup)."""
    return pd.DataFrame(paper_reference()["table1"])


def paper_code_release():
    """The code release's measured FP32/INT8 latency of SEQnet@vnni-A0 (ms, speedup)."""
    return pd.DataFrame(paper_reference()["code_release"])


def paper_claims():
    return pd.DataFrame(paper_reference()["claims"])


def paper_value(name: str) -> float:
    """A claim's value by name, or a Table 1 cell as ``table1/<device>/<model>/<column>``."""
    if name.startswith("table1/"):
        _, device, model, column = name.split("/")
        for row in paper_reference()["table1"]:
            if row["device"] == device and row["model"] == model:
                return row[column]
        raise KeyError(f"no Table 1 row for device {device!r}, model {model!r}")
    for c in paper_reference()["claims"]:
        if c["name"] == name:
            return c["value"]
    names = [c["name"] for c in paper_reference()["claims"]]
    raise KeyError(f"unknown paper value {name!r}; claims: {names}, or table1/<device>/<model>/<col>")
