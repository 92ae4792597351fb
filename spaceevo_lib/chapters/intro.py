"""The chapter "Introduction": the paper's claims and Table 1 (the reference file), what stands
in for what on this host, and the host itself, read at run time."""

from __future__ import annotations

import pandas as pd

from ..store import record


def _facts(host: pd.DataFrame) -> pd.Series:
    return host.set_index("property")["value"]


def glue_values(host: pd.DataFrame) -> dict:
    """The host facts the introduction's text cites (from :func:`report.host_table`)."""
    f = _facts(host)
    return {"host_cpu": f["CPU"], "host_vnni": f["VNNI"]}


def summary_records(host: pd.DataFrame) -> list[dict]:
    """``host/vnni`` and ``host/logical_cores``."""
    f = _facts(host)
    return [record("host/vnni", f["VNNI"], "yes/no"),
            record("host/logical_cores", int(f["logical cores"]), "cores")]
