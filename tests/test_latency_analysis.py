"""The latency chapter's zoo and its computed findings, on hand-made tables."""

import pandas as pd
import pytest

from spaceevo_lib.chapters import latency as analysis
from spaceevo_lib.latency.zoo import block_item, zoo_items, zoo_sizes
from spaceevo_lib.data import paper_table1


@pytest.mark.parametrize("size", zoo_sizes())
def test_zoo_items_are_unique_and_buildable(size):
    items = zoo_items(size)
    ids = [i.item for i in items]
    assert len(ids) == len(set(ids))
    assert {i.kind for i in items} == {"operator", "conv1x1", "block", "model"}
    for i in items:
        assert all(d >= 1 for d in i.input_shape)


def test_block_items_follow_the_hyperspace():
    it = block_item("onnxw", "stage5", "MBv3Res", 224)
    p = it.params
    assert (p["hw"], p["stride"], p["act"], p["k"]) == (14, 2, "hswish", 3)
    assert it.build()(__import__("torch").randn(*it.input_shape)).shape[1] == p["cout"]
    with pytest.raises(KeyError, match="has no block"):
        block_item("onnxw", "stage1", "MBv3K3Res", 224)


def _row(kind, op_type, device, speedup, **p):
    return {"kind": kind, "op_type": op_type, "device": device, "speedup": speedup,
            "speedup_iqr": 0.01, "noisy": False, "fp32_median_ms": 1.0,
            "int8_median_ms": 1.0 / speedup, **{f"p_{k}": v for k, v in p.items()}}


def _table(se=0.8, hs=0.7, mb3=(0.9, 1.2), mb2=(2.0, 1.8), sweep=(1.1, 1.5, 2.2)):
    rows = [_row("operator", "se", "ort-vnni", se, channels=64, hw=56),
            _row("operator", "hardswish", "ort-vnni", hs, channels=64, hw=56),
            _row("operator", "conv1x1", "ort-vnni", 2.0, channels=64, hw=56),
            _row("operator", "se", "tflite-noxnn", 1.5, channels=64, hw=56),
            _row("operator", "hardswish", "tflite-noxnn", 1.3, channels=64, hw=56),
            _row("operator", "conv1x1", "tflite-noxnn", 2.5, channels=64, hw=56)]
    for stage, a, b in zip(("stage1", "stage5"), mb3, mb2):
        rows += [_row("block", "MBv3Res", "ort-vnni", a, hyperspace="onnxw", stage=stage, hw=56,
                      cin=8, cout=8, e=4, act="hswish"),
                 _row("block", "MBv2Res", "ort-vnni", b, hyperspace="onnxw", stage=stage, hw=56,
                      cin=8, cout=8, e=4, act="relu6")]
    for c, s in zip((16, 64, 256), sweep):
        rows.append(_row("conv1x1", "conv1x1", "ort-vnni", s, channels=c, hw=56))
    rows.append(_row("model", "mobilenet_v3_small", "ort-vnni", 0.9, resolution=224))
    return pd.DataFrame(rows)


def _verdicts(t):
    f = analysis.findings(t)
    return {(c.split()[0], d): h for c, d, h in zip(f.claim, f.device, f.holds)}


def test_findings_follow_their_rules():
    v = _verdicts(_table())
    assert v[("SE", "ort-vnni")] == "yes"  # SE, Hardswish < 0.95 and MBv3 below MBv2
    assert v[("Conv1x1", "ort-vnni")] == "yes"
    assert v[("Conv1x1", "tflite-noxnn")] == "not measured"
    assert v[("Devices", "ort-vnni vs tflite-noxnn")] == "yes"


def test_findings_report_disagreement_with_the_paper():
    t = _table(se=1.3, hs=1.2, mb3=(2.5, 2.5), mb2=(2.0, 2.0), sweep=(2.0, 1.5, 1.1))
    v = _verdicts(t)
    assert v[("SE", "ort-vnni")] == "no"
    assert v[("Conv1x1", "ort-vnni")] == "no"
    assert "1.30x" in analysis.finding_se_hardswish(t).evidence


def test_model_table_and_summary_carry_the_paper_values():
    t = _table()
    m = analysis.model_table(t, paper_table1())
    assert m.loc[0, "paper_speedup"] == 1.1
    recs = {r["name"]: r for r in analysis.summary_records(t, paper_table1())}
    assert recs["speedup/ort-vnni/mobilenet_v3_small"]["paper"] == 1.1
    assert recs["speedup/ort-vnni/op/se"]["value"] == 0.8


def test_vnni_a0_sits_beside_the_code_release_measurement():
    t = pd.concat([_table(), pd.DataFrame([_row("model", "SEQnet@vnni-A0", "ort-vnni", 1.9,
                                                resolution=160)])])
    recs = {r["name"]: r for r in analysis.summary_records(t, paper_table1())}
    assert recs["release_speedup/ort-vnni/SEQnet@vnni-A0"]["paper"] == 2.04
    assert recs["fp32_ms/ort-vnni/SEQnet@vnni-A0"]["paper"] == 7.85
    assert recs["speedup/ort-vnni/SEQnet@vnni-A0"]["paper"] == 2.0


def test_seqnet_finding_compares_with_mobilenet_v3():
    t = pd.concat([_table(), pd.DataFrame([
        _row("model", "SEQnet@vnni-A0", "ort-vnni", 2.0, resolution=160),
        _row("model", "SEQnet@vnni-A1", "ort-vnni", 0.8, resolution=192)])])
    f = analysis.finding_seqnets_quantize_better(t, "ort-vnni")
    assert f.holds == "partly" and "SEQnet@vnni-A1 0.80x" in f.evidence
    assert analysis.finding_seqnets_quantize_better(t, "tflite").holds == "not measured"


def test_space_summary_puts_table1_beside_seqnet_sizes_and_speedups():
    from spaceevo_lib.chapters.space import space_summary
    seq = pd.DataFrame([{"model": "SEQnet@vnni-A0", "mflops_paper": 161.6, "mparams": 7.8,
                         "paper_mflops": 163.0, "speedup ort-vnni": 2.2,
                         "speedup tflite": float("nan")}])
    recs = {r["name"]: r for r in space_summary(
        seq, pd.DataFrame([{"what": "spaces", "count": "5"}]),
        pd.DataFrame({"max |supernet - extracted|": [0.0]}))}
    assert recs["mflops/SEQnet@vnni-A0"]["paper"] == 163.0
    assert recs["speedup/ort-vnni/SEQnet@vnni-A0"]["paper"] == 2.0
    assert "speedup/tflite/SEQnet@vnni-A0" not in recs  # not measured: no record


def test_recorded_values_name_the_setup_or_say_it_is_missing():
    import pandas as pd
    from spaceevo_lib.latency.records import recorded_values
    t = pd.DataFrame({"cpu_model": ["EPYC", "EPYC", None], "v": [None, None, None]})
    assert recorded_values(t, "cpu_model") == "EPYC"
    assert recorded_values(t, "v") == recorded_values(t, "absent") == "not recorded"
