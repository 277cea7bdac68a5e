"""The linear recurrence h_t = a_t ⊙ h_{t-1} + b_t over all steps at once, in log space (Heinsen 2023;
Feng et al. 2024, "Were RNNs All We Needed?"), for recurrences whose a_t and b_t do not depend on
h_{t-1}: minGRU, minLSTM. With a_t in (0, 1) and b_t > 0,

    h_t = A_t h_0 + Σ_{s<=t} (A_t / A_s) b_s,   A_t = a_1 ⋯ a_t,
    log of the sum = a*_t + logcumsumexp_s(log b_s - a*_s),   a*_t = Σ_{r<=t} log a_r,

two cumulative scans over time: O(log T) depth on parallel hardware instead of T dependent steps,
and every step stable however small A_t gets (it never leaves log space). h_0 may have any sign: its
term A_t h_0 is added outside the logarithm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def g(v: Tensor) -> Tensor:
    """The positive activation the log-space cells use for their candidate: v + 1/2 for v >= 0,
    σ(v) below (continuous, increasing, always > 0)."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def log_g(v: Tensor) -> Tensor:
    """log g(v), computed without forming g(v) for very negative v."""
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), F.logsigmoid(v))


def scan_log(log_a: Tensor, log_b: Tensor, h0: Tensor) -> Tensor:
    """h_t = a_t ⊙ h_{t-1} + b_t for every t, from log a_t, log b_t: (T, B, H) and h0: (B, H) → (T, B, H)."""
    a_star = torch.cumsum(log_a, dim=0)  # log A_t
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=0))
    return h + torch.exp(a_star) * h0
