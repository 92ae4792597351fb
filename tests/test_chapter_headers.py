"""Every pipeline chapter opens the same way (what it shows, what it needs, how long it takes on
this host) and ends with a summary, exercises and what comes next: readers and teachers find
the same parts in the same places."""

import json

import pytest

from spaceevo_lib.config import chapters
from spaceevo_lib.settings import project_root

SPECIAL = {"intro", "course", "scorecard"}  # the book's front and back matter
HEADER = ("## Overview", "## Prerequisites", "**Time to learn**", "**Needs from earlier chapters**",
          "**Compute**")
FOOTER = ("## Summary", "## Exercises", "## What's next")


def _cells(name):
    nb = json.loads((project_root() / "notebooks" / chapters()[name].notebook).read_text())
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


@pytest.mark.parametrize("name", [n for n in chapters() if n not in SPECIAL])
def test_chapter_header_and_footer(name):
    cells = _cells(name)
    kind, first = cells[0]
    assert kind == "markdown" and first.startswith(f"# {chapters()[name].title.split(',')[0]}"), \
        "the page title is the chapter title of chapters.yaml"
    head = "\n".join(s for k, s in cells[:4] if k == "markdown")
    assert all(h in head for h in HEADER), [h for h in HEADER if h not in head]
    # the Compute line is followed by this host's measured wall times, not typed ones
    assert any(k == "code" and "timing_table" in s for k, s in cells[:4])
    tail = "\n".join(s for k, s in cells if k == "markdown")
    assert all(f in tail for f in FOOTER), [f for f in FOOTER if f not in tail]
    assert tail.index("## Summary") < tail.index("## Exercises") < tail.index("## What's next")


@pytest.mark.parametrize("name", list(chapters()))
def test_parameters_cell_declares_every_chapter_parameter(name):
    """The notebook's parameters cell names exactly the chapter's parameters (plus profile and
    seed), so that papermill, `spaceevo params` and the cell agree."""
    cells = [s for k, s in _cells(name) if k == "code"]
    nb = json.loads((project_root() / "notebooks" / chapters()[name].notebook).read_text())
    tagged = ["".join(c["source"]) for c in nb["cells"]
              if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0] in cells
    declared = {line.split(":")[0].strip() for line in tagged[0].splitlines()
                if line and not line.startswith("#") and ":" in line.split("=")[0]}
    assert declared == {"profile", "seed", *chapters()[name].params}
