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

import math

import torch
import torch.nn.functional as F

#: AlphaNet's (and SpaceEvo's) settings: alpha range and importance-weight clip.
ALPHA_MIN, ALPHA_MAX, IW_CLIP = -1.0, 1.0, 5.0
#: Floor of log w: below it w^-1 exceeds any clip and p = q w is below float32's smallest normal.
LOG_W_MIN = math.log(torch.finfo(torch.float32).tiny)


def alpha_divergence(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor,
                     alpha: float, clip: float = IW_CLIP) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample (B,): the alpha-divergence D_alpha(p || q) (no gradient) and the surrogate
    whose gradient with respect to the student's logits is D's. Computed from log
    probabilities: a softmax that underflows to 0 (logit gaps above ~100, which a supernet's
    first steps can reach) would make w = p / q infinite or 0 / 0."""
    log_q = F.log_softmax(student_logits, dim=1)  # the only path the gradient takes
    lq = log_q.detach()
    q = lq.exp()
    log_p = teacher_log_probs.detach()
    # log w, floored where w^alpha is clipped anyway (alpha < 0) or q w = p is negligible
    log_w = (log_p - lq).clamp(min=LOG_W_MIN)
    if abs(alpha) < 1e-3:  # KL(q || p)
        log_w = log_w.clamp(max=math.log(clip))
        divergence = -(q * log_w).sum(1)
        surrogate = -(q * (log_w - 1.0) * log_q).sum(1)
    elif abs(alpha - 1.0) < 1e-3:  # KL(p || q): q w = p, so no weight is ever formed
        p = log_p.exp()
        divergence = (p * log_w).sum(1)
        surrogate = -(p * log_q).sum(1)
    else:
        w_alpha = (alpha * log_w).exp().clamp(max=clip)
        f_base = 1.0 / (alpha * (alpha - 1.0))
        divergence = (q * (w_alpha - 1.0) * f_base).sum(1)
        surrogate = -(q * (w_alpha / alpha + f_base) * log_q).sum(1)
    return divergence, surrogate


def adaptive_alpha_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                        alpha_min: float = ALPHA_MIN, alpha_max: float = ALPHA_MAX,
                        clip: float = IW_CLIP) -> torch.Tensor:
    """AlphaNet's ``AdaptiveLossSoft``: per sample the surrogate of the larger of
    D_alpha_min and D_alpha_max, averaged over the batch (a scalar to back-propagate)."""
    log_p = F.log_softmax(teacher_logits.detach(), dim=1)
    d_lo, s_lo = alpha_divergence(student_logits, log_p, alpha_min, clip)
    d_hi, s_hi = alpha_divergence(student_logits, log_p, alpha_max, clip)
    return torch.where(d_lo > d_hi, s_lo, s_hi).mean()
