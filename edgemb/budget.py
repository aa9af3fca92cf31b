"""The accuracy budget an artifact must meet: top-1 drop on labelled data, agreement and SQNR without labels.

ImageNet labels are not available offline and most users' own data is unlabelled, so the budget cannot
always be a top-1 drop. Without labels an artifact is held to the float model itself: top-1 agreement on the
samples where the float model is confident (a change there is a real regression, not a near-tie flipping)
and, optionally, the logits' SQNR.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from edgemb.errors import EdgembError

DEFAULT_MAX_DROP = 0.5
DEFAULT_MIN_AGREEMENT = 0.99


@dataclass(frozen=True)
class Budget:
    """Limits for one deploy; `max_drop` applies to labelled data, `min_agreement`/`min_sqnr_db` to any data."""

    max_drop: float | None = DEFAULT_MAX_DROP
    min_agreement: float | None = DEFAULT_MIN_AGREEMENT
    min_sqnr_db: float | None = None

    def __post_init__(self) -> None:
        checks = (("--max-drop", self.max_drop, 0.0, 100.0), ("--min-agreement", self.min_agreement, 0.0, 1.0),
                  ("--min-sqnr", self.min_sqnr_db, -200.0, 200.0))
        for flag, value, low, high in checks:
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                raise EdgembError(f"{flag} must be a number from {low:g} to {high:g}, got {value}")

    def verdict(self, parity: dict[str, Any]) -> tuple[bool, str]:
        """Whether a parity result (edgemb.metrics.parity) meets the budget, and the deciding numbers."""
        reasons, ok = [], True
        if parity.get("drop") is not None and self.max_drop is not None:
            ok &= parity["drop"] <= self.max_drop
            reasons.append(f"drop {parity['drop']:.2f} (max {self.max_drop:g})")
        elif self.min_agreement is not None:
            agreement, where = agreement_for_budget(parity)
            ok &= agreement >= self.min_agreement
            reasons.append(f"agreement {agreement:.2%} on {where} (min {self.min_agreement:.2%})")
        if self.min_sqnr_db is not None:
            ok &= parity["sqnr_db"] >= self.min_sqnr_db
            reasons.append(f"SQNR {parity['sqnr_db']:.1f} dB (min {self.min_sqnr_db:g})")
        return bool(ok), ", ".join(reasons)

    def met(self, parity: dict[str, Any]) -> bool:
        """Shorthand for verdict(...)[0]."""
        return self.verdict(parity)[0]

    def describe(self, labelled: bool) -> str:
        """One line for logs and reports: what this budget demands on such data."""
        parts = []
        if labelled and self.max_drop is not None:
            parts.append(f"top-1 drop <= {self.max_drop:g} points")
        elif self.min_agreement is not None:
            parts.append(f"agreement with float >= {self.min_agreement:.0%} on confident samples")
        if self.min_sqnr_db is not None:
            parts.append(f"logits SQNR >= {self.min_sqnr_db:g} dB")
        return ", ".join(parts) or "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON form for reports and stage keys."""
        return asdict(self)


def agreement_for_budget(parity: dict[str, Any]) -> tuple[float, str]:
    """Agreement on confident samples when there are any, else on all samples (and which one it was)."""
    if parity.get("n_confident"):
        return parity["agreement_confident"], f"{parity['n_confident']} confident samples"
    return parity["agreement"], f"all {parity['n']} samples"
