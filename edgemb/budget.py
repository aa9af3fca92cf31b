"""The accuracy budget an artifact must meet: a top-1 drop in points, measured or estimated.

ImageNet labels are not available offline and most users' own data is unlabelled, so the drop cannot
always be measured. Without labels it is estimated from the float model's own probabilities
(edgemb.metrics.estimated_drop) with a 95% interval, and `--max-drop` keeps the same number and meaning:
the interval must lie under it to pass, above it to fail, and an interval that straddles it is
"inconclusive": more evaluation data is needed, not a verdict. Agreement on confident samples and the
logits' SQNR are optional extra limits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from edgemb.errors import EdgembError

DEFAULT_MAX_DROP = 0.5
DEFAULT_MIN_AGREEMENT: float | None = None  # confident-sample agreement is reported; a limit only when asked
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
UNDECIDABLE_FACTOR = 100  # needing more than 100x the evaluation data is "more data will not decide it"


@dataclass(frozen=True)
class Budget:
    """Limits for one deploy: `max_drop` in top-1 points (measured on labelled data, estimated otherwise),
    optional `min_agreement` (confident samples) and `min_sqnr_db`."""

    max_drop: float | None = DEFAULT_MAX_DROP
    min_agreement: float | None = DEFAULT_MIN_AGREEMENT
    min_sqnr_db: float | None = None

    def __post_init__(self) -> None:
        checks = (("--max-drop", self.max_drop, 0.0, 100.0), ("--min-agreement", self.min_agreement, 0.0, 1.0),
                  ("--min-sqnr", self.min_sqnr_db, -200.0, 200.0))
        for flag, value, low, high in checks:
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                raise EdgembError(f"{flag} must be a number from {low:g} to {high:g}, got {value}")

    def judge(self, parity: dict[str, Any]) -> tuple[str, str]:
        """PASS, FAIL or INCONCLUSIVE for a parity result (edgemb.metrics.parity), and the deciding numbers."""
        outcomes: list[str] = []
        reasons: list[str] = []
        if self.max_drop is not None:
            if parity.get("drop") is not None:
                outcomes.append(PASS if parity["drop"] <= self.max_drop else FAIL)
                reasons.append(f"drop {parity['drop']:.2f} (max {self.max_drop:g})")
            elif parity.get("est_drop") is not None:
                low, high = parity["est_drop_low"], parity["est_drop_high"]
                outcomes.append(PASS if high <= self.max_drop else FAIL if low > self.max_drop else INCONCLUSIVE)
                reasons.append(f"estimated drop {parity['est_drop']:.2f} [{low:.2f}, {high:.2f}] "
                               f"(max {self.max_drop:g})")
        if self.min_agreement is not None:
            agreement, where = agreement_for_budget(parity)
            outcomes.append(PASS if agreement >= self.min_agreement else FAIL)
            reasons.append(f"agreement {agreement:.2%} on {where} (min {self.min_agreement:.2%})")
        if self.min_sqnr_db is not None:
            outcomes.append(PASS if parity["sqnr_db"] >= self.min_sqnr_db else FAIL)
            reasons.append(f"SQNR {parity['sqnr_db']:.1f} dB (min {self.min_sqnr_db:g})")
        status = FAIL if FAIL in outcomes else INCONCLUSIVE if INCONCLUSIVE in outcomes else PASS
        text = ", ".join(reasons) or "no limit"
        if status == INCONCLUSIVE:
            text = f"inconclusive: more evaluation data needed ({text})"
            needed = samples_to_decide(parity, self.max_drop) if self.max_drop is not None else None
            if needed is not None and needed <= UNDECIDABLE_FACTOR * parity["n"]:
                text += f"; about {needed:,} samples like these would decide it"
            elif parity.get("est_drop") is not None:
                text += (f"; the estimate sits too close to the budget for more data to decide it (over "
                         f"{UNDECIDABLE_FACTOR} times these {parity['n']:,} samples)")
        return status, text

    def verdict(self, parity: dict[str, Any]) -> tuple[bool, str]:
        """Whether a parity result passes (an inconclusive one does not), and the deciding numbers."""
        status, text = self.judge(parity)
        return status == PASS, text

    def met(self, parity: dict[str, Any]) -> bool:
        """Shorthand for verdict(...)[0]."""
        return self.verdict(parity)[0]

    def describe(self, labelled: bool, metric: str = "top-1") -> str:
        """One line for logs and reports: what this budget demands on such data, in the task's metric points."""
        parts = []
        if self.max_drop is not None:
            if metric != "top-1" and not labelled:  # a decoding task without truth: disagreement with float
                parts.append(f"{metric} against the float model's own results >= {100 - self.max_drop:g} "
                             f"(no labels: {metric} points lost to float <= {self.max_drop:g})")
            else:
                parts.append(f"{metric} drop <= {self.max_drop:g} points" if labelled else
                             f"estimated {metric} drop <= {self.max_drop:g} points (whole 95% interval, no labels)")
        if self.min_agreement is not None:
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


def samples_to_decide(parity: dict[str, Any], max_drop: float) -> int | None:
    """How many evaluation samples would make the estimated drop's interval clear `max_drop`, if the estimate
    and the share of disagreeing samples stayed as they are (the interval narrows as 1/sqrt(n)).

    Tells an inconclusive verdict's reader whether more data can help at all: an estimate of 0.3 against a
    0.5 budget needs a few times more samples, one of 0.48 a few hundred times more. None when there is no
    estimate or it sits exactly on the budget (no amount of data decides that). Crops of one photo are
    correlated, so count independent images.
    """
    if parity.get("est_drop") is None or not parity.get("n"):
        return None
    est, low, high = parity["est_drop"], parity["est_drop_low"], parity["est_drop_high"]
    half, margin = (high - est, max_drop - est) if est < max_drop else (est - low, est - max_drop)
    if margin <= 0 or half <= 0:
        return None
    needed = parity["n"] * (half / margin) ** 2
    digits = max(0, len(str(int(needed))) - 2)  # two significant figures, rounded up
    return int(math.ceil(needed / 10 ** digits) * 10 ** digits)
