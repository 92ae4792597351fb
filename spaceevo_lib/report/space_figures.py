"""Figures and tables of the chapter "The search spaces": hyperspaces drawn, spaces counted."""

from __future__ import annotations


def hyperspace_table(name: str):
    """One row per stage: widths, depths, stride, window size and count, candidate blocks."""
    import pandas as pd
    from ..space import get_hyperspace
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
    import pandas as pd
    from ..space import get_hyperspace
    hs = get_hyperspace(name)
    return pd.DataFrame([{"digit": b.index, "block": b.code, "kernels": str(list(b.kernels)),
                          "expands": str(list(b.expands)) if b.expands else "-",
                          "activation": b.activation, "SE": "yes" if b.se else "no"}
                         for b in hs.blocks])


def plot_hyperspace(name: str, space=None):
    """Each stage's width list as dots, its windows as bars; a space's choice highlighted."""
    import matplotlib.pyplot as plt
    from ..space import get_hyperspace
    hs = get_hyperspace(name)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(hs.stages) + 1.2))
    for row, s in enumerate(hs.stages):
        ax.scatter(s.widths, [row] * len(s.widths), color="0.2", s=14, zorder=3)
        if s.name in hs.searchable_stages:
            for j in range(s.n_windows):
                w = s.window(j)
                ax.plot([w[0], w[-1]], [row + 0.12 + 0.06 * j] * 2, color="tab:blue",
                        alpha=0.35, lw=2)
        if space is not None:
            code, widths = space.describe()[s.name]
            ax.plot([widths[0], widths[-1]], [row - 0.15] * 2, color="tab:red", lw=4)
            ax.annotate(code, (widths[-1], row - 0.15), xytext=(6, -3),
                        textcoords="offset points", fontsize=7, color="tab:red")
    ax.set_yticks(range(len(hs.stages)), [s.name for s in hs.stages])
    ax.invert_yaxis()
    ax.set_xlabel("output width (channels)")
    title = f"Hyperspace {name}: width lists (dots) and width windows (blue)"
    ax.set_title(title + (f"; space {space.encode()} in red" if space is not None else ""),
                 fontsize=9)
    fig.tight_layout()
    return fig


def counts_table(names: list[str]):
    """Candidate spaces per hyperspace and subnets per published space (exact integers)."""
    import pandas as pd
    from ..space import count_spaces, count_subnets, get_hyperspace, published_spaces
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
    import pandas as pd
    from ..space import get_hyperspace
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
    import pandas as pd
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
    import math

    from ..store import record
    from ..latency.analysis import PAPER_DEVICE
    from .paper import paper_table1
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
