"""Shared fixtures: small helpers that make test models behave like trained ones."""

from __future__ import annotations

import http.server
import threading

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


@pytest.fixture
def served(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www, counting the requests it answers."""
    root = tmp_path / "www"
    root.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()
