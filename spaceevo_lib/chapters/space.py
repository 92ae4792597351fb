"""The chapter "The search spaces": hyperspaces as tables, spaces counted exactly, the published
SEQnets' sizes beside Table 1 and their measured INT8 speedups, and the chapter's records."""

from __future__ import annotations

import math

import pandas as pd

from ..data.paper import paper_table1
from ..space import count_spaces, count_subnets, get_hyperspace
from ..space.encoding import published_spaces, published_subnets
from ..store import MissingResultError, record


def arch_table(hyperspace: str | None = None) -> pd.DataFrame:
    """The published SEQnets (optionally of one hyperspace, ``onnxw`` or ``mobilew``) with
    their resolution, blocks, MFLOPs in the paper convention (conv MACs without the
    classifier, §9.3), MFLOPs with it, parameters, and Table 1's FLOPs where it lists the
    model."""
    import torch  # heavy: torch

    from ..nn.flops import profile  # heavy: imports torch
    from ..nn.subnet import build_subnet  # heavy: imports torch
    spaces = published_spaces()
    if hyperspace is not None and hyperspace not in {s.hyperspace for s in spaces.values()}:
        valid = sorted({s.hyperspace for s in spaces.values()})
        raise KeyError(f"no published SEQnet in hyperspace {hyperspace!r}; valid: "
                       f"{', '.join(valid)}")
    t1 = paper_table1()
    paper = dict(zip(t1["model"], t1["mflops"]))
    rows = []
    for name, (space_name, sub) in published_subnets().items():
        sp = spaces[space_name]
        if hyperspace is not None and sp.hyperspace != hyperspace:
            continue
        with torch.no_grad():
            model = build_subnet(sp, sub)
            prof = profile(model, model.input_shape)
        rows.append({"model": name, "space": space_name, "hyperspace": sp.hyperspace,
                     "resolution": sub.resolution, "blocks": sub.n_blocks, **prof,
                     "paper_mflops": paper.get(name)})
    return pd.DataFrame(rows)


def hyperspace_table(name: str):
    """One row per stage: widths, depths, stride, window size and count, candidate blocks."""
    hs = get_hyperspace(name)
    blocks = ", ".join(f"{b.index}:{b.code}" for b in hs.blocks)
    rows = []
    for s in hs.stages:
        searched = s.name in hs.searchable_stages
        rows.append({"stage": s.name, "widths": " ".join(map(str, s.widths)),
                     "depths": " ".join(map(str, s.depths)), "stride": s.stride,
                     "window": s.window_size, "windows": s.n_windows,
                     "blocks": blocks if searched else "fixed"})
    for h in hs.head:
        rows.append({"stage": h.part, "widths": str(h.width), "depths": "1", "stride": 1,
                     "window": 1, "windows": 1, "blocks": f"fixed ({h.activation})"})
    return pd.DataFrame(rows)


def block_table(name: str):
    """The candidate blocks of a hyperspace with their kernels, expand ratios and activation."""
    hs = get_hyperspace(name)
    return pd.DataFrame([{"digit": b.index, "block": b.code, "kernels": str(list(b.kernels)),
                          "expands": str(list(b.expands)) if b.expands else "-",
                          "activation": b.activation, "SE": "yes" if b.se else "no"}
                         for b in hs.blocks])


def counts_table(names: list[str]):
    """Candidate spaces per hyperspace and subnets per published space (exact integers)."""
    rows = [{"what": f"candidate spaces of {n}", "count": count_spaces(n),
             "as power of 10": f"10^{len(str(count_spaces(n))) - 1}"} for n in names]
    for label, sp in published_spaces().items():
        if sp.hyperspace in names:
            c = count_subnets(get_hyperspace(sp.hyperspace), sp)
            rows.append({"what": f"subnets of {label} ({sp.encode()})", "count": c,
                         "as power of 10": f"10^{len(str(c)) - 1}"})
    return pd.DataFrame(rows).astype({"count": str})


def scaling_table(base: str, scaled: str):
    """A paper hyperspace beside its training-scale version, stage by stage (widths, depths,
    windows, strides) and their resolutions."""
    a, b = get_hyperspace(base), get_hyperspace(scaled)
    rows = [{"stage": sa.name, f"{base} widths": " ".join(map(str, sa.widths)),
             f"{scaled} widths": " ".join(map(str, sb.widths)), "depths": " ".join(
                 map(str, sa.depths)), "windows": sa.n_windows,
             "stride": f"{sa.stride} -> {sb.stride}" if sa.stride != sb.stride else str(sa.stride)}
            for sa, sb in zip(a.stages, b.stages)]
    rows.append({"stage": "resolutions", f"{base} widths": " ".join(map(str, a.resolutions)),
                 f"{scaled} widths": " ".join(map(str, b.resolutions)), "depths": "",
                 "windows": "", "stride": ""})
    return pd.DataFrame(rows)


def seqnet_table(arch, measurements):
    """The published SEQnets: size (this run's count) beside Table 1's FLOPs, and this host's
    INT8 speedup on each device from the latency chapter's measurements."""
    m = measurements[measurements.op_type.str.startswith("SEQnet@")]
    speed = m.pivot_table(index="op_type", columns="device", values="speedup")
    speed.columns = [f"speedup {c}" for c in speed.columns]
    out = arch[["model", "space", "resolution", "mflops_paper", "mflops_all", "mparams",
                "paper_mflops"]].merge(speed, left_on="model", right_index=True, how="left")
    return out


def describe_spaces(spaces: dict):
    """Published spaces decoded: per searchable stage, block type and active width window."""
    rows = []
    for label, sp in spaces.items():
        d = sp.describe()
        row = {"space": label, "encoding": sp.encode()}
        for stage in ("stage1", "stage2", "stage3", "stage4", "stage5", "stage6"):
            code, widths = d[stage]
            row[stage] = f"{code} {widths[0]}-{widths[-1]}"
        rows.append(row)
    return pd.DataFrame(rows)


def space_summary(seqnets, counts, check) -> list[dict]:
    """Headline numbers of the chapter: SEQnet sizes (beside Table 1's FLOPs) and speedups,
    space counts, and the weight-sharing check."""
    from ..latency.devices import PAPER_DEVICE  # heavy: imports torch
    t1 = paper_table1()
    table1 = {(d, m): v for d, m, v in zip(t1.device, t1.model, t1.speedup)}
    out = []
    for r in seqnets.to_dict("records"):
        paper = r.get("paper_mflops")
        paper = None if paper is None or (isinstance(paper, float) and math.isnan(paper)) else paper
        out.append(record(f"mflops/{r['model']}", round(r["mflops_paper"], 1), "MFLOPs", paper))
        out.append(record(f"mparams/{r['model']}", round(r["mparams"], 2), "M params"))
        for key, v in r.items():
            if key.startswith("speedup ") and v == v:  # skip NaN (device not measured)
                device = key.split(" ", 1)[1]
                paper_speedup = table1.get((PAPER_DEVICE.get(device), r["model"]))
                out.append(record(f"speedup/{device}/{r['model']}", round(v, 3), "x",
                                  paper_speedup))
    for r in counts.itertuples():
        out.append(record(f"count/{r.what}", r.count, "count"))
    out.append(record("weight_sharing/max_abs_diff",
                      float(check["max |supernet - extracted|"].max()), "abs"))
    return out


def seqnets(profile: str) -> pd.DataFrame:
    """The published SEQnets' sizes beside Table 1, with this host's INT8 speedups from the
    latency chapter at ``profile`` (sizes only when that chapter has not run there)."""
    from .latency import load_measurements  # heavy: imports torch
    arch = arch_table()
    try:
        measured = load_measurements(profile)
    except MissingResultError:
        measured = arch[[]].assign(op_type=[], device=[], speedup=[])
    return seqnet_table(arch, measured)


def glue_values(cfg, supernet, check: pd.DataFrame) -> dict:
    """The demo space, the supernet's size and the largest extraction difference."""
    return {"demo_space": cfg.demo_space,
            "supernet_mparams": round(sum(p.numel() for p in supernet.parameters()) / 1e6, 2),
            "max_diff": f"{check['max |supernet - extracted|'].max():.1e}"}
