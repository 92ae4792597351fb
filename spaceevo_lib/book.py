"""Execute the chapters with papermill and build the book with Jupyter Book 1.

Sources are ``notebooks/<chapter>.ipynb`` (no outputs). Executed copies go to
``book/chapters/`` (git-ignored), which ``_toc.yml`` lists; Jupyter Book renders those copies
without executing them again (``execute_notebooks: "off"`` in ``_config.yml``), into
``_build/html``. A failing cell stops the build with the chapter, notebook and cell named.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
from myst_nb import glue as myst_glue

from ._io import atomic_path, write_json
from .config import chapter_config, chapters, check_profile, get_chapter
from .settings import PROFILE_ENV, project_root, runs_dir


class ChapterFailed(RuntimeError):
    """A chapter notebook raised; the message names the chapter, notebook and cell."""


def source_notebook(name: str) -> Path:
    return project_root() / "notebooks" / get_chapter(name).notebook


def executed_notebook(name: str, root: Path | None = None) -> Path:
    return (root or project_root()) / "book" / "chapters" / get_chapter(name).notebook


def run_chapter(name: str, params: Mapping[str, Any] | None = None,
                root: Path | None = None, progress: bool = False) -> Path:
    """Validate ``params``, execute one chapter with papermill and return the executed copy.

    The copy is written atomically; a failed run is kept as ``_build/failed/<notebook>`` for
    inspection and raises :class:`ChapterFailed`.
    """
    import papermill as pm  # heavy: papermill
    from papermill.exceptions import PapermillExecutionError  # heavy: papermill

    params = dict(params or {})
    # the book and `spaceevo chapter` run the profile they are given: `make lab`'s
    # SPACEEVO_PROFILE is for notebooks opened by hand, not for their kernels
    lab_profile = os.environ.pop(PROFILE_ENV, None)
    try:
        return _run_chapter(name, params, root, progress, pm, PapermillExecutionError)
    finally:
        if lab_profile is not None:
            os.environ[PROFILE_ENV] = lab_profile


#: First line of papermill's injected cell on the rendered page: readers see the chapter's
#: documented defaults (the parameters cell) and, labelled, what this run was given.
INJECTED_LABEL = "# This run's parameters, injected by papermill (they override the defaults above)"


def _label_injected_parameters(path: Path) -> None:
    nb = json.loads(Path(path).read_text())
    for cell in nb["cells"]:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            src = "".join(cell["source"]).splitlines()
            if src and src[0].strip() == "# Parameters":
                src = src[1:]
            cell["source"] = "\n".join([INJECTED_LABEL, *src]) + "\n"
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False))


def _run_chapter(name, params, root, progress, pm, PapermillExecutionError) -> Path:
    cfg = chapter_config(name, **params)  # stops on a bad parameter before any work
    src, dst = source_notebook(name), executed_notebook(name, root)
    start = time.perf_counter()
    with atomic_path(dst) as tmp:
        try:
            pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name="python3",
                                progress_bar=progress, cwd=str(src.parent))
            _label_injected_parameters(tmp)
        except PapermillExecutionError as e:
            failed = (root or project_root()) / "_build" / "failed" / src.name
            failed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp, failed)
            first = (e.source or "").strip().splitlines()[:1]
            raise ChapterFailed(
                f"chapter {name!r} ({src.relative_to(project_root())}) failed in cell "
                f"{e.cell_index} (execution count {e.exec_count}"
                f"{', starting ' + repr(first[0]) if first else ''}): {e.ename}: {e.evalue}\n"
                f"executed copy with the traceback: {failed}") from None
    write_json(runs_dir() / cfg.profile / name / "timing.json", {
        "chapter": name, "profile": cfg.profile, "params": params,
        "seconds": round(time.perf_counter() - start, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return dst


def glue(values: Mapping[str, Any]) -> None:
    """Glue each value under its name for the page's text (``{glue:}`` roles, myst-nb),
    without displaying it: a chapter's cited numbers come from its module in one call."""
    for name, value in values.items():
        myst_glue(name, value, display=False)


def timings(name: str) -> list[dict]:
    """Wall times of this chapter's last run at each profile on this host (from the store)."""
    out = []
    for profile in ("smoke", "default", "paper"):
        path = runs_dir() / profile / name / "timing.json"
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


def timing_table(name: str):
    """:func:`timings` as a table for a chapter's "Compute" header."""
    rows = [{"profile": t["profile"], "wall time (s)": t["seconds"], "finished": t["finished"]}
            for t in timings(name)]
    if not rows:
        rows = [{"profile": "none yet", "wall time (s)": float("nan"),
                 "finished": "this is the first run of this chapter on this host"}]
    return pd.DataFrame(rows, columns=["profile", "wall time (s)", "finished"])


def build_html(root: Path | None = None, quiet: bool = True) -> Path:
    """Render the executed chapters with Jupyter Book 1; returns ``_build/html/index.html``."""
    root = root or project_root()
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(root), "--builder", "html",
           "--warningiserror", "--keep-going"]
    if quiet:
        cmd.append("--quiet")
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed ({proc.returncode}):\n"
                           f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    index = root / "_build" / "html" / "index.html"
    if not index.is_file():
        raise RuntimeError(f"jupyter-book finished but {index} is missing")
    return index


def build_book(profile: str = "default", names: Iterable[str] | None = None,
               root: Path | None = None, html: bool = True, progress: bool = True) -> Path | None:
    """Execute every chapter (or ``names``) at ``profile`` in order, then build the HTML."""
    check_profile(profile)
    for name in (names or chapters()):
        t = time.perf_counter()
        print(f"[spaceevo] chapter {name!r} at profile {profile!r} ...", flush=True)
        run_chapter(name, {"profile": profile}, root=root, progress=progress)
        print(f"[spaceevo] chapter {name!r} done in {time.perf_counter() - t:.1f} s", flush=True)
    return build_html(root) if html else None
