"""Distillation losses as functions of tensors (no string-keyed dicts).

All return scalar tensors. Channel axis is 1; any trailing spatial axes are summed (paper) or
averaged (``reduction="mean"``, the authors' code) per sample, then averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kd_loss", "rid_phase1_loss", "rid_phase2_loss", "vid_loss", "weighted_mismatch"]


def _per_channel(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigma.view(1, -1, *([1] * (like.dim() - 2)))


def weighted_mismatch(v: torch.Tensor, sigma: torch.Tensor, *, reduction: str = "sum") -> torch.Tensor:
    """E[sum_{c,h,w} V^2 / sigma_c] (``"sum"``, the paper) or the per-element mean (``"mean"``)."""
    if v.shape[1] != sigma.numel():
        raise ValueError(
            f"weighted_mismatch(): V has {v.shape[1]} channels but sigma has {sigma.numel()}; give sigma one "
            "entry per filter output channel."
        )
    w = v.pow(2) / _per_channel(sigma, v)
    if reduction == "sum":
        return w.flatten(1).sum(1).mean()
    if reduction == "mean":
        return w.mean()
    raise ValueError(f"The 'reduction' parameter must be one of ['mean', 'sum']. Got {reduction!r} instead.")


def rid_phase1_loss(
    head_logits: torch.Tensor,
    y: torch.Tensor,
    ft: torch.Tensor,
    fs: torch.Tensor,
    sigma: torch.Tensor,
    *,
    coupling: bool = True,
    reduction: str = "sum",
) -> torch.Tensor:
    """Phase 1 of RID for one layer pair: CE(Y, g_t(f_t(T))) + E[sum V^2 / sigma_c], V = f_t(T) - f_s(S).

    Only the teacher filter and head are trained in phase 1: ``fs`` and ``sigma`` are detached.
    ``coupling=False`` drops the second term (the warm-up).
    """
    loss = F.cross_entropy(head_logits, y)
    if coupling:
        loss = loss + weighted_mismatch(ft - fs.detach(), sigma.detach(), reduction=reduction)
    return loss


def rid_phase2_loss(
    ft: torch.Tensor, fs: torch.Tensor, sigma: torch.Tensor, *, reduction: str = "sum", sigma_penalty: str = "sumsq"
) -> torch.Tensor:
    """Phase 2 regulariser of RID for one layer pair: ||sigma||^2 + E[sum V^2 / sigma_c].

    The teacher filter output is detached (phase 2 trains the student, f_s and sigma). With
    ``sigma_penalty="meansq"`` the penalty is mean_c sigma_c^2 (the authors' code).
    """
    pen = sigma.pow(2).sum() if sigma_penalty == "sumsq" else sigma.pow(2).mean()
    return pen + weighted_mismatch(ft.detach() - fs, sigma, reduction=reduction)


def vid_loss(t: torch.Tensor, mu: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """VID: 0.5 * mean(log v + (T - mu(S))^2 / v), v per teacher channel (Ahn et al. 2019)."""
    if t.shape != mu.shape:
        raise ValueError(
            f"vid_loss(): teacher features {tuple(t.shape)} and regressor output {tuple(mu.shape)} differ; "
            "configure the VIDRegressor with the teacher layer's channel count."
        )
    v = _per_channel(variance, t)
    return 0.5 * (torch.log(v) + (t.detach() - mu).pow(2) / v).mean()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float = 4.0) -> torch.Tensor:
    """Hinton et al. (2015): T^2 KL(softmax(teacher / T) || softmax(student / T)), batch mean."""
    t = temperature
    p_t = F.softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), p_t, reduction="batchmean") * t * t
