"""environment.yml (conda) and pyproject.toml pin the same packages at the same versions."""

import tomllib

import yaml

from spaceevo_lib.settings import project_root


def _pins(reqs):
    out = {}
    for r in reqs:
        name, _, version = r.partition("==")
        assert version, f"not pinned with ==: {r!r}"
        out[name.strip().lower()] = version.strip()
    return out


def test_environment_yml_matches_pyproject():
    root = project_root()
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    want = _pins(project["dependencies"] + sum(project["optional-dependencies"].values(), []))
    env = yaml.safe_load((root / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip) == want
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11" and project["requires-python"] == ">=3.11,<3.12"
