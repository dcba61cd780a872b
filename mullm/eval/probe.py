"""Probes: how much of an attribute do clip-level statistics of encoder features carry?

A probe is the ceiling a model built on the same features should approach: logistic
regression (``linear_probe``) or a one-hidden-layer MLP (``mlp_probe``) on the mean and
standard deviation over time of each clip's frames, with inputs standardised on the training
clips. Both are deterministic (seeded), full-batch and take seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def clip_statistics(frames: torch.Tensor) -> torch.Tensor:
    """(T, D) valid frames of one clip -> (2 D,) mean and standard deviation over time."""
    frames = frames.float()
    std = frames.std(0, unbiased=False) if frames.shape[0] > 1 else torch.zeros_like(frames[0])
    return torch.cat([frames.mean(0), std])


def _standardise(x_tr: np.ndarray, x_te: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    return (torch.tensor((x_tr - mu) / sd, dtype=torch.float32),
            torch.tensor((x_te - mu) / sd, dtype=torch.float32))


def _targets(y_tr: Sequence[str], y_te: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    classes = sorted(set(y_tr) | set(y_te))
    idx = {c: i for i, c in enumerate(classes)}
    return (torch.tensor([idx[c] for c in y_tr]), torch.tensor([idx[c] for c in y_te]),
            len(classes))


def linear_probe(x_tr: np.ndarray, y_tr: Sequence[str], x_te: np.ndarray,
                 y_te: Sequence[str], l2: float = 1e-3, max_iter: int = 300) -> float:
    """Multinomial logistic regression (full-batch L-BFGS, L2 ``l2``); test accuracy."""
    xt, xe = _standardise(x_tr, x_te)
    yt, ye, n_classes = _targets(y_tr, y_te)
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(xt.shape[1], n_classes)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.01)
        lin.bias.zero_()
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=max_iter)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((lin(xe).argmax(1) == ye).float().mean())


def mlp_probe(x_tr: np.ndarray, y_tr: Sequence[str], x_te: np.ndarray, y_te: Sequence[str],
              hidden: int = 256, epochs: int = 200, lr: float = 3e-3,
              weight_decay: float = 1e-2, dropout: float = 0.3) -> float:
    """One hidden GELU layer (full batch AdamW, dropout on the hidden layer); test accuracy."""
    xt, xe = _standardise(x_tr, x_te)
    yt, ye, n_classes = _targets(y_tr, y_te)
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], hidden), torch.nn.GELU(),
                              torch.nn.Dropout(dropout), torch.nn.Linear(hidden, n_classes))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (p.shape[-1] ** -0.5 if p.dim() > 1
                                                         else 0.0))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    state = torch.random.get_rng_state()
    torch.manual_seed(0)  # dropout masks, without leaving the caller's RNG moved
    try:
        net.train()
        for _ in range(epochs):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt), yt).backward()
            opt.step()
    finally:
        torch.random.set_rng_state(state)
    net.eval()
    with torch.no_grad():
        return float((net(xe).argmax(1) == ye).float().mean())
