"""Latency on a board edgemb cannot time: a cited measurement from that board, scaled to the model's MACs.

An emulator (qemu-user) proves numerics, never speed: its timings ranked backends in an order that has
nothing to do with a Cortex-A72. Without a real device the pick is therefore made on this estimate. Each
target file lists published measurements (`[[published_latency]]`: board, runtime, precision, threads, the
zoo model measured and where it was published); a model with M multiply-accumulates is estimated at
ms_published * M / M_published. That keeps the runtime's and precision's own efficiency on that board, and
assumes time scales with MACs within one architecture family: the report says so beside every figure.
A backend the board file has no measurement for gets no estimate, and is not ranked on speed.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from edgemb.targets import Target
from edgemb.zoo import parse_model_name
from edgemb.zoo.counting import count_macs

ESTIMATE_LABEL = "estimated"


@cache
def zoo_macs(model: str) -> int:
    """Multiply-accumulates of a zoo entry (`v2_1.0`, `v1_0.25@160`) at its resolution."""
    spec = parse_model_name(model)
    return count_macs(spec.build(), spec.resolution)


def estimate_latency(target: Target, backend: str, precision: str, macs: int) -> dict[str, Any] | None:
    """The estimate for one artifact, or None when the board file cites nothing for this backend/precision."""
    matches = [r for r in target.published_latency if r["backend"] == backend and r["precision"] == precision]
    if not matches:
        return None
    ref = matches[0]
    ref_macs = zoo_macs(ref["model"])
    ms = ref["ms"] * macs / ref_macs
    return {"p50_ms": round(ms, 3), "kind": ESTIMATE_LABEL, "threads": ref["threads"],
            "source": ref["source"],
            "basis": (f"{ref['ms']:g} ms published for {ref['model']} ({ref_macs / 1e6:.0f} M MACs, "
                      f"{ref['threads']} threads) on {target.board}, scaled by MACs to this model's "
                      f"{macs / 1e6:.0f} M")}
