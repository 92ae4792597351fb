"""Exercise solutions that are code run as written, against the smoke build's run folders:
a solution a reader copies must work (and give the answer the chapter's own code gives)."""

import json
import re

import numpy as np
import pytest

from spaceevo_lib.config import chapters
from spaceevo_lib.settings import PROFILE_ENV, project_root

FENCE = re.compile(r"```python\n(.*?)```", re.S)


def code_solutions():
    """(chapter, label, code) of every ``{solution}`` block holding a python code block."""
    out = []
    for name, ch in chapters().items():
        nb = json.loads((project_root() / "notebooks" / ch.notebook).read_text())
        for cell in nb["cells"]:
            text = "".join(cell["source"])
            for _, label, body in re.findall(r"(`{3,4})\{solution\} (\S+)\n(.*?)\n\1\n",
                                             text + "\n", re.S):
                for code in FENCE.findall(body):
                    out.append((name, label, code))
    return out


def test_there_are_code_solutions():
    assert any(label == "ex-int8-open" for _, label, _ in code_solutions())


def test_every_pipeline_chapter_has_exercises_whose_solutions_are_checked_code():
    """Each chapter of the pipeline has exercises, and every exercise's solution holds code
    that asserts its answer (run by :func:`test_code_solution_runs`), so a solution that
    breaks fails CI."""
    with_code = {}
    for chapter, label, code in code_solutions():
        with_code.setdefault(chapter, set()).add(label)
        assert "assert " in code, f"{label}: the solution's code checks nothing"
    for name, ch in chapters().items():
        if name in ("intro", "course", "scorecard"):
            continue
        text = (project_root() / "notebooks" / ch.notebook).read_text()
        labels = set(re.findall(r":label: (ex-[\w-]+)", text))
        assert len(labels) >= 2, f"{name}: fewer than two exercises"
        missing = labels - with_code.get(name, set())
        assert not missing, f"{name}: solutions without checked code: {sorted(missing)}"


@pytest.mark.slow
@pytest.mark.parametrize("chapter, label, code", code_solutions(),
                         ids=[s[1] for s in code_solutions()])
def test_code_solution_runs(smoke_book, monkeypatch, chapter, label, code):
    monkeypatch.setenv(PROFILE_ENV, "smoke")
    monkeypatch.chdir(smoke_book)
    scope: dict = {}
    exec(compile(code, f"<solution {label}>", "exec"), scope)
    if label == "ex-int8-open":  # the same answer as the library's evaluator on that file
        from spaceevo_lib.quant.deploy import predict_file
        ref = predict_file(scope["path"], scope["data"]["x_test"][:1])
        assert scope["logits"].shape == ref.shape == (1, 10)
        assert int(scope["logits"].argmax()) == int(ref.argmax())
        np.testing.assert_allclose(scope["logits"], ref, rtol=1e-4, atol=1e-5)
