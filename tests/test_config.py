"""Chapters, profiles and parameter validation."""

import json

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
    (dict(resolution="64"), ["'resolution'", "one of 32, 64", "got str '64'"]),
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
