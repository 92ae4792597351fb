"""Hyperspaces, space and subnet encodings (paper-notes §2, §6, §10); no torch needed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from spaceevo_lib import settings
from spaceevo_lib.space import (
    STAGE_NAMES,
    EncodingError,
    SpaceChoice,
    Subnet,
    count_spaces,
    count_subnets,
    get_hyperspace,
    list_hyperspaces,
    max_subnet,
    min_subnet,
    published_spaces,
    published_subnets,
    sample_subnet,
    scale_widths,
    scaled_hyperspace,
)

VNNI = "onnxw-151122-023231"
VNNI_A0 = ("d1#1#2#2#2#2#2#1_k3#3#3#3#3#3#3#3#3#3#3#3#3_w16#16#32#32#64#64#112#112#144#144#240"
           "#240#320_e0#0.5#4.0#4.0#1.0#1.0#4.0#4.0#4.0#4.0#4.0#4.0#4.0_r160")
PIXEL4 = "mobilew-122222-155400"
PIXEL4_A0 = ("d1#1#2#2#2#2#2#1_k3#3#3#3#3#3#3#3#3#3#3#3#3_w16#16#32#32#64#64#96#96#144#144#192"
             "#192#216_e0#1.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0_r160")
PAPER = ("mobilew", "onnxw")
SCALED = ("mobilew-train", "onnxw-train")


@pytest.fixture
def reference(monkeypatch) -> dict:
    """The published search_result.yaml, found through settings.data_dir() (CI: ../shared/data)."""
    if settings.DATA_ENV not in os.environ:
        monkeypatch.setenv(settings.DATA_ENV, str(settings.project_root().parent / "shared/data"))
    path = settings.data_dir() / "spaceevo-reference" / "search_result.yaml"
    if not path.is_file():
        pytest.skip(f"reference data not found at {path}; run `spaceevo fetch spaceevo-reference`")
    return yaml.safe_load(path.read_text())


# ----------------------------------------------------------------------------- hyperspaces


def test_registry_lists_paper_and_scaled_spaces():
    assert set(PAPER + SCALED) <= set(list_hyperspaces())
    with pytest.raises(KeyError, match="onnxw.*mobilew|mobilew.*onnxw"):
        get_hyperspace("onnx-w")


@pytest.mark.parametrize("name,widths,windows,n_blocks", [
    ("onnxw", {"stage1": (32, 48, 64), "stage2": (32, 48, 64, 80, 96),
               "stage6": tuple(range(304, 449, 16))}, (2, 4, 4, 4, 4, 4), 6),
    ("mobilew", {"stage2": tuple(range(24, 73, 8)),
                 "stage5": (192, 200, 208, 216, 224, 240, 256, 272, 288),
                 "stage6": tuple(range(216, 361, 16))}, (2, 6, 6, 7, 5, 4), 7),
])
def test_paper_tables(name, widths, windows, n_blocks):
    hs = get_hyperspace(name)
    assert tuple(s.name for s in hs.stages) == STAGE_NAMES
    for stage, w in widths.items():
        assert hs.stage(stage).widths == w
    assert hs.window_counts == windows
    assert len(hs.blocks) == n_blocks
    assert [s.stride for s in hs.stages] == [2, 1, 2, 2, 2, 1, 2, 1]
    assert hs.stage("first_conv").n_windows == hs.stage("stage0").n_windows == 1
    assert hs.resolutions == (160, 176, 192, 208, 224)
    assert hs.sample_resolutions == (192, 208, 224)
    assert (hs.final_expand.width, hs.feature_mix.width, hs.n_classes) == (1280, 1920, 1000)


def test_block_candidates_and_fixed_parts():
    onnx, mob = get_hyperspace("onnxw"), get_hyperspace("mobilew")
    assert [b.code for b in onnx.blocks] == [
        "MBv1Dual", "MBv2Res", "MBv3Res", "ResNet", "ResNetSE", "FusedMBRes"]
    assert onnx.block(2).activation == "hswish" and onnx.block(2).se
    assert onnx.block(1).expands == (4.0, 6.0, 8.0) and onnx.block(1).kernels == (3, 5)
    assert onnx.block(5).expands == (1.0, 2.0, 3.0, 4.0) and not onnx.block(5).se
    assert mob.block(2).activation == "swish" and mob.block(3).kernels == (3, 5)
    assert mob.block(0).expands == () and mob.block(0).expand_choices == (None,)
    assert (onnx.stage0.code, onnx.stage0.expands) == ("ResNet", (0.5,))
    assert (mob.stage0.code, mob.stage0.expands) == ("MBv2", (1.0,))
    assert onnx.final_expand.activation == "hswish" and mob.feature_mix.activation == "swish"
    with pytest.raises(KeyError, match="0=MBv1Dual"):
        onnx.block(6)


@pytest.mark.parametrize("name", SCALED)
def test_scaled_hyperspaces_keep_structure(name):
    hs = get_hyperspace(name)
    base = get_hyperspace(hs.base)
    assert hs.blocks == base.blocks
    assert (hs.first_conv, hs.stage0) == (base.first_conv, base.stage0)
    assert hs.window_counts == base.window_counts
    assert count_spaces(hs) == count_spaces(base)
    for s, b in zip(hs.stages, base.stages):
        assert (s.name, s.depths, s.window_size) == (b.name, b.depths, b.window_size)
        # the training scale's one stride change: the stem runs at stride 1 on 32-px images
        assert s.stride == (1 if s.name == "first_conv" else b.stride)
        assert len(s.widths) == len(b.widths) and max(s.widths) < max(b.widths)
        assert all(w % 8 == 0 for w in s.widths)
    assert hs.n_classes == hs.logits.width == 10
    assert hs.final_expand.width < base.final_expand.width
    assert max(hs.resolutions) == 32 and len(hs.resolutions) == len(base.resolutions)
    assert hs.sample_resolutions == hs.resolutions[-3:]


def test_scale_widths_rule():
    assert scale_widths((32, 48, 64), 4) == (8, 16, 24)
    assert scale_widths((192, 208, 224, 240), 4) == (48, 56, 64, 72)
    assert scale_widths((1280,), 4) == (320,)
    hs = scaled_hyperspace("onnxw", "tmp", width_divisor=8, max_resolution=32)
    assert hs.resolutions == (24, 26, 28, 30, 32) and hs.name == "tmp" and hs.base == "onnxw"
    assert hs.stage("first_conv").stride == 2  # strides change only when asked
    with pytest.raises(KeyError, match="unknown stage"):
        scaled_hyperspace("onnxw", "tmp", strides={"stem": 1})


# ----------------------------------------------------------------------------- counts


def test_count_spaces():
    assert count_spaces("onnxw") == 6 ** 6 * (2 * 4 ** 5) == 95_551_488
    assert count_spaces("mobilew") == 7 ** 6 * (2 * 6 * 6 * 7 * 5 * 4) == 1_185_901_920


def test_count_subnets_by_hand():
    # onnxw-151122-023231, per stage: k * active widths * e choices per block (paper-notes §6)
    def stage(per_block, depths):
        return sum(per_block ** d for d in depths)

    expected = (2 * stage(2, [1, 2])                      # first_conv (1 depth), stage0
                * stage(2 * 2 * 3, [2, 3, 4])             # stage1 MBv2Res (32,48)
                * stage(3 * 2 * 4, [2, 3, 4])             # stage2 FusedMBRes (64,80)
                * stage(2 * 3 * 3, range(2, 7)) ** 2      # stage3, stage4 MBv2Res, 3 widths
                * stage(2 * 5 * 3, range(2, 7))           # stage5 MBv3Res, 5 widths
                * stage(2 * 7 * 3, [1, 2]))               # stage6 MBv3Res, 7 widths
    assert count_subnets("onnxw", VNNI) == 5 * expected
    assert count_subnets("onnxw", VNNI, resolutions=(192, 208, 224)) == 3 * expected


def test_count_subnets_published(reference):
    counts = {n: count_subnets(sp.hyperspace, sp) for n, sp in published_spaces().items()}
    assert set(counts) == set(reference["specific_supernet_encoding_dict"])
    assert counts["spaceevo@vnni"] == count_subnets("onnxw", VNNI)
    assert counts["spaceevo@vnni"] == 829_460_353_688_731_289_991_825_749_266_071_552_000
    assert all(c > 10 ** 36 for c in counts.values())


# ----------------------------------------------------------------------------- spaces


def test_space_golden_and_describe():
    sp = SpaceChoice("onnxw", (1, 5, 1, 1, 2, 2), (0, 2, 3, 2, 3, 1))
    assert sp.encode() == VNNI == str(sp)
    assert SpaceChoice.decode(VNNI) == sp
    d = sp.describe()
    assert list(d) == list(STAGE_NAMES)
    assert d["stage1"] == ("MBv2Res", (32, 48))
    assert d["stage2"] == ("FusedMBRes", (64, 80))
    assert d["stage5"] == ("MBv3Res", (240, 256, 272, 288, 304))
    assert d["stage6"] == ("MBv3Res", tuple(range(320, 417, 16)))
    assert d["stage0"] == ("ResNet", (16, 32))
    px = SpaceChoice.decode("mobilew-332160-134200").describe()
    assert px["stage5"] == ("MBv2K3Res", (192, 200, 208, 216, 224))
    assert px["stage6"][0] == "MBv1Dual"


def test_space_in_scaled_hyperspace():
    sp = SpaceChoice.decode("onnxw-train-" + VNNI.split("-", 1)[1])
    assert sp.hyperspace == "onnxw-train" and sp.encode() == "onnxw-train-151122-023231"
    assert sp.describe()["stage1"] == ("MBv2Res", (16, 24))


def test_published_spaces_round_trip(reference):
    raw = reference["specific_supernet_encoding_dict"]
    spaces = published_spaces()
    assert list(spaces) == list(raw) and len(spaces) == 5
    for name, s in raw.items():
        assert spaces[name].encode() == s
        assert SpaceChoice.decode(s).encode() == s


@pytest.mark.parametrize("s,field,words", [
    ("onnx-151122-023231", "hyperspace", ["onnxw", "mobilew"]),
    ("onnxw151122023231", None, ["<hyperspace>"]),
    ("onnxw-15112a-023231", "blocks", ["digits"]),
    ("onnxw-15112-023231", "blocks", ["need 6", "got 5"]),
    ("onnxw-161122-023231", "blocks", ["stage2", "5=FusedMBRes", "got 6"]),
    ("onnxw-151122-043231", "windows", ["stage2", "0..3", "got 4"]),
    ("onnxw-151122-0232310", "windows", ["need 6"]),
])
def test_bad_space_strings(s, field, words):
    with pytest.raises(EncodingError) as err:
        SpaceChoice.decode(s)
    assert err.value.field == field
    for w in words:
        assert w in str(err.value)


# ----------------------------------------------------------------------------- subnets


def test_subnet_golden():
    sub = Subnet.decode(VNNI_A0)
    assert sub.encode() == VNNI_A0
    assert sub.depths == (1, 1, 2, 2, 2, 2, 2, 1) and sub.resolution == 160
    assert sub.expands[:5] == (None, 0.5, 4.0, 4.0, 1.0)
    assert sub.stage_blocks()["stage2"] == ((3, 64, 1.0), (3, 64, 1.0))
    assert min_subnet("onnxw", VNNI).encode() == VNNI_A0
    assert min_subnet("mobilew", PIXEL4).encode() == PIXEL4_A0
    big = max_subnet("onnxw", VNNI)
    assert big.depths == (1, 2, 4, 4, 6, 6, 6, 2) and big.resolution == 224
    assert big.widths[-1] == 416 and big.kernels[-1] == 5 and big.expands[-1] == 8.0
    assert big.validate("onnxw", VNNI) is big
    # constructor accepts 0 for "no expand" and ints for floats
    assert Subnet(sub.depths, sub.kernels, sub.widths, (0,) + sub.expands[1:], 160) == sub


def test_published_subnets_round_trip(reference):
    raw = reference["specific_subnet_encoding_dict"]
    subs = published_subnets()
    assert list(subs) == list(raw) and len(subs) == 10
    spaces = published_spaces()
    for name, (space_name, s) in raw.items():
        got_space, sub = subs[name]
        assert got_space == space_name
        assert sub.encode() == s
        assert Subnet.decode(s).encode() == s
        sp = spaces[space_name]
        sub.validate(sp.hyperspace, sp)


def test_a0_models_are_min_subnets(reference):
    spaces = published_spaces()
    subs = published_subnets()
    for name in ("SEQnet@pixel4-A0", "SEQnet@vnni-A0"):
        space_name, sub = subs[name]
        sp = spaces[space_name]
        assert sub == min_subnet(sp.hyperspace, sp)
    for name in ("SEQnet@pixel4-A1", "SEQnet@vnni-A4"):
        space_name, sub = subs[name]
        assert sub != min_subnet(spaces[space_name].hyperspace, spaces[space_name])


@pytest.mark.parametrize("space", [VNNI, PIXEL4, "mobilew-332160-134200",
                                   "onnxw-train-121122-133333", "mobilew-train-112220-154410"])
def test_sampled_subnets_validate_and_round_trip(space):
    sp = SpaceChoice.decode(space)
    hs = get_hyperspace(sp.hyperspace)
    rng = np.random.default_rng(0)
    subs = [sample_subnet(hs, sp, rng) for _ in range(200)]
    for sub in subs:
        sub.validate(hs, sp)
        assert Subnet.decode(sub.encode()) == sub
        assert sub.resolution in hs.sample_resolutions
    assert len({s.encode() for s in subs}) == len(subs)
    again = [sample_subnet(hs, sp, np.random.default_rng(0)) for _ in range(1)]
    assert again[0] == subs[0]
    low = sample_subnet(hs, sp, rng, resolutions=hs.resolutions[:1])
    assert low.resolution == hs.resolutions[0]
    for sub in (min_subnet(hs, sp), max_subnet(hs, sp)):
        sub.validate(hs, sp)


def _edit(field: str, i: int, value: str, s: str = VNNI_A0) -> str:
    parts = s.split("_")
    idx = "dkwer".index(field)
    tokens = parts[idx][1:].split("#")
    tokens[i] = value
    parts[idx] = field + "#".join(tokens)
    return "_".join(parts)


@pytest.mark.parametrize("s,field,words", [
    (VNNI_A0.rsplit("_", 1)[0], None, ["5 '_'-separated", "got 4"]),
    (VNNI_A0.replace("_k3#", "_x3#"), "k", ["'k'", "kernels"]),
    (VNNI_A0.replace("_r160", "_160"), "r", ["'r'"]),
    (_edit("k", 2, "a"), "k", ["value 2", "'a'"]),
    (_edit("w", 0, "016"), "w", ["leading zeros"]),
    (_edit("e", 2, "4"), "e", ["value 2", "4.0", "'4'"]),
    (_edit("e", 1, "0.50"), "e", ["'0.50'"]),
    (_edit("e", 1, "x"), "e", ["'x'"]),
    (_edit("r", 0, "160#176"), "r", ["one resolution"]),
    (VNNI_A0.replace("d1#1#2#2#2#2#2#1", "d1#1#2#2#2#2#2"), "d", ["8 depths", "got 7"]),
    (VNNI_A0.replace("d1#1#2#2#2#2#2#1", "d1#1#2#2#2#2#2#0"), "d", ["stage6", ">= 1"]),
    (VNNI_A0.replace("_k3#3#", "_k3#"), "k", ["13", "got 12"]),
    (VNNI_A0.replace("_e0#", "_e"), "e", ["13", "got 12"]),
])
def test_malformed_subnet_strings(s, field, words):
    with pytest.raises(EncodingError) as err:
        Subnet.decode(s)
    assert err.value.field == field
    for w in words:
        assert w in str(err.value), str(err.value)


@pytest.mark.parametrize("s,field,words", [
    (VNNI_A0.replace("d1#1#2#", "d1#1#5#"), "k", ["16", "got 13"]),  # counts checked first
    (VNNI_A0.replace("d1#1#", "d1#3#"), "k", []),
    (_edit("k", 2, "7"), "k", ["stage1 block 0", "3, 5", "MBv2Res", "got 7"]),
    (_edit("k", 0, "5"), "k", ["first_conv block 0", "got 5"]),
    (_edit("w", 4, "96"), "w", ["stage2 block 0", "64, 80", "got 96"]),
    (_edit("w", 1, "24"), "w", ["stage0 block 0", "16, 32", "got 24"]),
    (_edit("e", 1, "1.0"), "e", ["stage0 block 0", "0.5", "got 1.0"]),
    (_edit("e", 0, "1.0"), "e", ["first_conv block 0", "allows expand 0", "got 1.0"]),
    (_edit("e", 4, "6.0"), "e", ["stage2 block 0", "1.0, 2.0, 3.0, 4.0", "FusedMBRes"]),
    (_edit("e", 12, "2.0"), "e", ["stage6 block 0", "4.0, 6.0, 8.0"]),
    (_edit("r", 0, "100"), "r", ["160, 176", "got 100"]),
])
def test_out_of_space_subnets(s, field, words):
    with pytest.raises(EncodingError) as err:
        Subnet.decode(s).validate("onnxw", VNNI)
    assert err.value.field == field
    for w in words:
        assert w in str(err.value), str(err.value)


def test_out_of_space_depth():
    sub = max_subnet("onnxw", VNNI)
    bad = Subnet((1, 3) + sub.depths[2:], sub.kernels + (3,), sub.widths + (16,),
                 sub.expands + (0.5,), 224)
    with pytest.raises(EncodingError, match=r"d: stage0 .*\(1, 2\); got 3") as err:
        bad.validate("onnxw", VNNI)
    assert err.value.field == "d"
    with pytest.raises(EncodingError, match="not in hyperspace"):
        sub.validate("mobilew", VNNI)


def test_missing_reference_file(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(settings.DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="spaceevo fetch spaceevo-reference"):
        published_spaces()
    with pytest.raises(FileNotFoundError, match=settings.DATA_ENV):
        published_subnets(tmp_path / "nope")


def test_a_space_string_is_read_against_the_hyperspace_it_starts_with():
    """A hyperspace name holds '-' (onnxw-train): a short string is reported against the name
    the user typed, not against a piece of it."""
    with pytest.raises(EncodingError) as err:
        SpaceChoice.decode("onnxw-train-111")
    assert "'onnxw-train'" in str(err.value) and "got 'train'" not in str(err.value)
