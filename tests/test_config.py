"""Chapters, profiles and parameter validation."""

import json
import os

import pytest
import yaml

from spaceevo_lib.config import (PROFILES, ParameterError, chapter_config, chapters,
                                 parse_cli_value)
from spaceevo_lib.settings import project_root


def test_profiles_fill_every_parameter():
    for name, ch in chapters().items():
        for profile in PROFILES:
            cfg = chapter_config(name, profile=profile)
            assert set(cfg.values) == set(ch.params)


def test_override_and_attribute_access():
    cfg = chapter_config("data", profile="smoke", resolution=64, seed=3)
    assert (cfg.resolution, cfg.seed, cfg.profile) == (64, 3, "smoke")
    assert cfg.grid_per_class == chapters()["data"].params["grid_per_class"].profiles["smoke"]


@pytest.mark.parametrize("given, words", [
    (dict(profile="fast"), ["unknown profile 'fast'", "smoke, default, paper"]),
    (dict(resolutoin=32), ["unknown parameter 'resolutoin'", "chapter 'data'", "resolution"]),
    (dict(resolution="sixty-four"), ["'resolution'", "one of 32, 64", "got str 'sixty-four'"]),
    (dict(resolution=48), ["'resolution'", "one of 32, 64", "got 48"]),
    (dict(grid_per_class=0), ["'grid_per_class'", ">= 1", "<= 16"]),
    (dict(grid_per_class=True), ["'grid_per_class'", "got bool"]),
    (dict(seed=-1), ["'seed'"]),
])
def test_bad_parameters_name_the_parameter_and_what_is_allowed(given, words):
    with pytest.raises(ParameterError) as e:
        chapter_config("data", **given)
    for w in words:
        assert w in str(e.value)


def test_unknown_chapter():
    with pytest.raises(ParameterError, match="unknown chapter 'dta'.*data"):
        chapter_config("dta")


def test_namespace_catches_injected_typo():
    import math
    ns = {"profile": "smoke", "seed": 0, "resolution": None, "resoluton": 32, "math": math,
          "In": [], "_": None, "glue": print}
    with pytest.raises(ParameterError, match="unknown parameter 'resoluton'"):
        chapter_config("data", ns)
    del ns["resoluton"]
    assert chapter_config("data", ns).resolution == 32


def test_cli_values_parse_like_papermill():
    assert parse_cli_value("32") == 32 and parse_cli_value("0.5") == 0.5
    assert parse_cli_value("crop_flip") == "crop_flip" and parse_cli_value("true") is True


@pytest.mark.parametrize("name, given, want", [
    ("per_channel", "false", False), ("per_channel", "No", False), ("per_channel", "TRUE", True),
    ("per_channel", "yes", True), ("per_channel", "1", True), ("per_channel", 0, False),
    ("batch_size", "64", 64), ("batch_size", "64.0", 64), ("batch_size", 64.0, 64),
    ("lr", "0.01", 0.01), ("lr", "1e-3", 0.001), ("lr", 1, 1.0),
    ("networks", "teacher", "teacher"),
])
def test_one_parser_for_every_front_door(name, given, want):
    """What a notebook cell, papermill (``-p``: lowercase words stay strings; ``-r``: raw
    strings) and ``spaceevo chapter`` pass all mean the same value."""
    got = chapter_config("int8", profile="smoke", **{name: given}).values[name]
    assert got == want and type(got) is type(want)
    if isinstance(given, str):
        assert chapter_config("int8", profile="smoke",
                              **{name: parse_cli_value(given)}).values[name] == want


@pytest.mark.parametrize("name, given", [("per_channel", "maybe"), ("per_channel", 2),
                                         ("batch_size", "64.5"), ("batch_size", "many"),
                                         ("lr", "fast")])
def test_values_of_the_wrong_type_are_still_refused_by_name(name, given):
    with pytest.raises(ParameterError, match=f"'{name}'.*got"):
        chapter_config("int8", profile="smoke", **{name: given})


def test_messages_use_the_right_article():
    from spaceevo_lib.config import chapters
    words = {p.allowed() for ch in chapters().values() for p in ch.params.values()}
    assert not [w for w in words if w.split(" ")[:2] in (["a", "int"], ["a", "str"])]
    with pytest.raises(ParameterError, match="must be an int"):
        chapter_config("int8", profile="smoke", batch_size="many")


def _parameters_cell(nb_path):
    nb = json.loads(nb_path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{nb_path.name}: needs exactly one cell tagged 'parameters'"
    return "".join(cells[0]["source"])


def test_notebooks_declare_exactly_their_parameters():
    for name, ch in chapters().items():
        path = project_root() / "notebooks" / ch.notebook
        assert path.is_file(), path
        ns = {}
        exec(_parameters_cell(path), ns)  # literals only, as the style guide asks
        declared = {k for k in ns if not k.startswith("__")}
        assert declared == set(ch.allowed_names), name
        assert all(ns[p] is None for p in ch.params), f"{name}: chapter params default to None"
        assert ns["profile"] == "default"


def test_notebooks_have_no_outputs():
    for ch in chapters().values():
        nb = json.loads((project_root() / "notebooks" / ch.notebook).read_text())
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


def test_toc_lists_every_chapter_in_order():
    toc = yaml.safe_load((project_root() / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for c in toc["chapters"]]
    want = [f"book/chapters/{ch.notebook.removesuffix('.ipynb')}" for ch in chapters().values()]
    assert files == want


def test_papermill_reads_every_parameter_with_its_help():
    import papermill as pm
    for ch in chapters().values():
        found = pm.inspect_notebook(str(project_root() / "notebooks" / ch.notebook))
        assert set(found) == set(ch.allowed_names), ch.name
        assert all(p["help"] for p in found.values()), f"{ch.name}: a parameter lacks help"


def _probe_notebook(path):
    """A notebook with the INT8 chapter's parameters cell that writes what chapter_config made
    of them to $PROBE_OUT (papermill injects after the parameters cell, as in a chapter)."""
    import nbformat
    src = json.loads((project_root() / "notebooks" / "06_int8.ipynb").read_text())
    params = next(c for c in src["cells"] if "parameters" in c["metadata"].get("tags", []))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("".join(params["source"]),
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(
                    "import json, os\nimport spaceevo_lib as sel\n"
                    "cfg = sel.chapter_config('int8', globals())\n"
                    "open(os.environ['PROBE_OUT'], 'w').write(json.dumps(cfg.as_dict()))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("args, name, want", [
    (("-p", "per_channel", "false"), "per_channel", False),  # papermill: the string 'false'
    (("-r", "batch_size", "64"), "batch_size", 64),  # -r: a raw string
    (("-r", "lr", "0.01"), "lr", 0.01),
    (("-p", "networks", "teacher"), "networks", "teacher"),
], ids=["bool", "int", "float", "str"])
def test_papermill_values_are_parsed_as_the_cli_parses_them(tmp_path, args, name, want):
    import subprocess
    import sys
    nb = _probe_notebook(tmp_path / "probe.ipynb")
    out = tmp_path / "cfg.json"
    proc = subprocess.run([sys.executable, "-m", "papermill", str(nb), str(tmp_path / "o.ipynb"),
                           "-p", "profile", "smoke", *args], capture_output=True, text=True,
                          env={**os.environ, "PROBE_OUT": str(out)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(out.read_text())[name]
    assert got == want and type(got) is type(want)
    cli = chapter_config("int8", profile="smoke", **{name: parse_cli_value(args[2])})
    assert cli.values[name] == got  # `spaceevo chapter` / `make chapter` agree
