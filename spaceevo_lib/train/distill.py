"""In-place distillation loss of the supernet's sandwich: AlphaNet's adaptive alpha-divergence
(Wang et al. 2021; training-notes §4), the loss SpaceEvo's reference trains with.

For a student distribution q (softmax of its logits) and the teacher's p (the max subnet's
detached softmax), with importance weights w = p / q, the alpha-divergence is

    D_alpha(p || q) = sum_c q_c (f(w_c) - f(1)),   f(w) = w^alpha / (alpha (alpha - 1)),

(alpha -> 0: f = -log w, KL(q || p); alpha -> 1: f = w log w, KL(p || q)). AlphaNet evaluates
it at alpha_min = -1 and alpha_max = +1, per sample keeps the larger one (penalising both
over- and under-estimation of the teacher's uncertainty), and clips w^alpha at 5 against
exploding weights. What is back-propagated is a surrogate whose gradient equals D's:
-sum_c q_c rho_c log q_c with q and rho_c = w_c^alpha / alpha + f(1) held constant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: AlphaNet's (and SpaceEvo's) settings: alpha range and importance-weight clip.
ALPHA_MIN, ALPHA_MAX, IW_CLIP = -1.0, 1.0, 5.0


def alpha_divergence(student_logits: torch.Tensor, teacher_probs: torch.Tensor, alpha: float,
                     clip: float = IW_CLIP) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample (B,): the alpha-divergence D_alpha(p || q) (no gradient) and the surrogate
    whose gradient with respect to the student's logits is D's."""
    q = F.softmax(student_logits, dim=1).detach()
    log_q = F.log_softmax(student_logits, dim=1)  # the only path the gradient takes
    w = teacher_probs.detach() / q
    if abs(alpha) < 1e-3:  # KL(q || p)
        w = w.clamp(0, clip)
        f, f_base, rho = -w.log(), 0.0, w.log() - 1.0
    elif abs(alpha - 1.0) < 1e-3:  # KL(p || q)
        f, f_base, rho = w * w.log(), 0.0, w
    else:
        w_alpha = w.pow(alpha).clamp(0, clip)
        f_base = 1.0 / (alpha * (alpha - 1.0))
        f, rho = w_alpha * f_base, w_alpha / alpha + f_base
    divergence = (q * (f - f_base)).sum(1)
    surrogate = -(q * rho * log_q).sum(1)
    return divergence, surrogate


def adaptive_alpha_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                        alpha_min: float = ALPHA_MIN, alpha_max: float = ALPHA_MAX,
                        clip: float = IW_CLIP) -> torch.Tensor:
    """AlphaNet's ``AdaptiveLossSoft``: per sample the surrogate of the larger of
    D_alpha_min and D_alpha_max, averaged over the batch (a scalar to back-propagate)."""
    p = F.softmax(teacher_logits.detach(), dim=1)
    d_lo, s_lo = alpha_divergence(student_logits, p, alpha_min, clip)
    d_hi, s_hi = alpha_divergence(student_logits, p, alpha_max, clip)
    return torch.where(d_lo > d_hi, s_lo, s_hi).mean()
