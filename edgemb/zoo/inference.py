"""The float PyTorch reference run: a zoo model's logits for preprocessed inputs, batched, with a progress bar.

Every parity number compares against these outputs (evaluate, verify, the float-logits cache of a prepared
model), so there is one way to compute them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgemb.progress import progress

DEFAULT_BATCH = 250


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = DEFAULT_BATCH, desc: str = "float") -> np.ndarray:
    """Logits of a PyTorch model for preprocessed float32 NCHW inputs, batched, with a progress bar."""
    model.eval()
    outputs = [model(torch.from_numpy(x[start: start + batch_size])).numpy()
               for start in progress(range(0, len(x), batch_size), desc=desc, unit="batch")]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def predict_outputs(model: nn.Module, x: np.ndarray, batch_size: int = DEFAULT_BATCH,
                    desc: str = "float") -> list[np.ndarray]:
    """Every raw output of a PyTorch model (a detector's tuple gives a list), batched, with a progress bar."""
    model.eval()
    parts: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in progress(range(0, len(x), batch_size), desc=desc, unit="batch"):
            out = model(torch.from_numpy(x[start: start + batch_size]))
            parts.append([o.numpy() for o in (out if isinstance(out, tuple | list) else (out,))])
    return [np.concatenate(column) for column in zip(*parts, strict=True)]
