"""Shared fixtures: small helpers that make test models behave like trained ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def randomise_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial affine terms and statistics so logits vary with the input.

    A freshly initialised MobileNet has unit BN and tiny head weights: its logits are almost constant, which
    would let an export bug hide behind a tiny max |diff|.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.5 + torch.rand(c, generator=gen))
                module.bias.copy_(0.2 * torch.randn(c, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            elif isinstance(module, nn.Linear):
                module.weight.normal_(0, 0.1, generator=gen)
    return model.eval()


@pytest.fixture
def randomised():
    """The randomise_statistics helper as a fixture."""
    return randomise_statistics
