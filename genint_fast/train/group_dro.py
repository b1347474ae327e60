"""Group DRO (Sagawa, Koh, Hashimoto & Liang, ICLR 2020), the online algorithm of its Algorithm 1.

The loss is a weighted sum of per-group mean losses, sum_g q_g L_g, with group weights q on the
simplex that follow exponentiated gradient ascent: q_g <- q_g exp(eta L_g), then normalised. As in
the authors' code, a group absent from the batch has L_g = 0 (its weight is only renormalised), q
starts uniform, and the update uses the detached losses before the weighted sum is formed.
Defaults: eta = 0.01 (the paper's step size). The paper's generalisation adjustment
(C / sqrt(n_g)) is not applied (C = 0, its default).

Group labels come from the data: on the built-in digits the group of an image is
class x stroke-colour id (`genint_fast.eval.groups.group_ids`), so Group DRO needs the nuisance
labels that GenInt and CGN never read.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["GroupDRO"]


class GroupDRO:
    """Holds the group weights q; `loss(logits, labels, groups)` returns the robust loss and
    updates q (training only)."""

    def __init__(self, num_groups: int, eta: float = 0.01, device="cpu"):
        if num_groups < 1:
            raise ValueError(f"Group DRO needs at least one group, got {num_groups}")
        if not eta > 0:
            raise ValueError(f"dro_eta must be > 0, got {eta}")
        self.num_groups, self.eta = int(num_groups), float(eta)
        self.q = torch.full((self.num_groups,), 1.0 / self.num_groups, dtype=torch.float64,
                            device=device)

    def group_losses(self, logits, labels, groups) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-group mean CE (G,), per-group counts (G,)); 0 for groups absent here."""
        per = F.cross_entropy(logits.float(), labels, reduction="none")
        g = groups.to(per.device)
        if bool((g < 0).any()) or bool((g >= self.num_groups).any()):
            raise ValueError(f"group ids must lie in [0, {self.num_groups}); check the data's "
                             "nuisance ids")
        counts = torch.zeros(self.num_groups, device=per.device).index_add_(
            0, g, torch.ones_like(per))
        sums = torch.zeros(self.num_groups, device=per.device).index_add_(0, g, per)
        return sums / counts.clamp(min=1), counts

    def loss(self, logits, labels, groups) -> torch.Tensor:
        losses, _ = self.group_losses(logits, labels, groups)
        q = self.q.to(losses.device) * torch.exp(self.eta * losses.detach().double())
        self.q = q / q.sum()
        return (losses * self.q.to(losses.dtype)).sum()

    def state_dict(self) -> dict:
        return {"q": self.q.cpu().clone(), "eta": self.eta}

    def load_state_dict(self, st: dict) -> None:
        q = torch.as_tensor(st["q"], dtype=torch.float64)
        if q.shape != (self.num_groups,):
            raise ValueError(f"the checkpoint's Group DRO has {q.numel()} groups, this run "
                             f"{self.num_groups}")
        self.q = q.to(self.q.device)
