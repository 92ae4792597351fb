"""A supernet's stages started from the block-wise distillation students (``init: blockkd``).

A stage student (:class:`~spaceevo_lib.blockkd.students.StageStudent`) holds an elastic stage
built by the same :func:`~.elastic.elastic_block` as a supernet's, but over the stage's
**full** width list (its first block over the previous stage's full list), while a candidate
space takes one width window per stage. OFA-style sharing slices first-N channels, so the
supernet stage of the same (stage, block) takes the first-N slice of every student tensor
(output, input, hidden, SE and BN channels; the kernels are the same size): inside the windows
it then computes what the student computes. Only the FP32 students are used (an LSQ+ student's
scales cover other widths and inputs); stem, stage0 and head start from scratch, and the
students' projections are dropped (stage i+1 learned from projected teacher features, not from
stage i), so BN statistics must be re-estimated before any evaluation.

DONNA (Moons et al. 2021) fine-tunes block-distilled networks; whether such a start speeds a
weight-sharing supernet is measured by the supernet chapter, not assumed here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..train.engine import CheckpointError
from .network import Supernet

#: The file a finished block-wise job keeps (``blockkd.jobs.STAGE_WEIGHTS``), and its format tag.
STUDENT_FILE, STUDENT_FORMAT = "stage_fp32.pt", "spaceevo-stage-student"


def student_file(job_folder: Path, hyperspace: str, stage: int, block: int) -> Path:
    """Where the block-wise job of (stage, block) keeps its FP32 student stage."""
    return Path(job_folder) / "students" / hyperspace / f"stage{stage}_{block}" / STUDENT_FILE


def load_students(job_folder: Path, supernet: Supernet) -> dict[int, dict]:
    """The FP32 student stage of each searchable stage of ``supernet``'s space, from the
    block-wise chapter's job folder; one clear message when any is missing or belongs to
    another hyperspace, stage or block."""
    sp = supernet.space
    out, missing = {}, []
    for i, block in enumerate(sp.blocks, start=1):
        path = student_file(job_folder, sp.hyperspace, i, block)
        if not path.is_file():
            missing.append(str(path.relative_to(job_folder)))
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        want = (STUDENT_FORMAT, sp.hyperspace, i, block)
        got = (state.get("format"), state.get("hyperspace"), state.get("stage"),
               state.get("block"))
        if got != want:
            raise CheckpointError(f"{path} holds a student of {got[1:]} (format {got[0]!r}), "
                                  f"not of {want[1:]}: it cannot start this space's stage")
        out[i] = state
    if missing:
        raise CheckpointError(
            f"no FP32 stage students for {', '.join(missing)} in {job_folder}: run the "
            "block-wise distillation chapter (job version 4 or later keeps them) with this "
            "teacher and hyperspace, or start from scratch (init scratch)")
    return out


@torch.no_grad()
def warm_start(supernet: Supernet, students: dict[int, dict]) -> Supernet:
    """Copy the first-N slice of each student's stage tensors into the supernet's stage of the
    same index (1..6); returns the supernet (changed in place)."""
    for i, state in students.items():
        target = supernet.stages[f"stage{i}"]
        src = state["stage_state"]
        for key, t in target.state_dict().items():
            if key not in src:
                raise CheckpointError(f"stage{i} student has no {key!r}: it was built for "
                                      "another block")
            s = src[key]
            if s.dim() != t.dim() or any(a > b for a, b in zip(t.shape, s.shape)):
                raise CheckpointError(f"stage{i} {key}: student {tuple(s.shape)} cannot hold "
                                      f"the supernet's {tuple(t.shape)}")
            t.copy_(s[tuple(slice(0, n) for n in t.shape)])
    return supernet
