"""The one training loop: AdamW with a cosine learning-rate decay over shuffled mini-batches.

Its random draws are one ``randperm`` per epoch from the caller's generator, then whatever ``step`` draws: every
model of the project (``diffsem train``, ``diffsem attack train``) is reproducible from its seed through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

# A step maps a batch of sample indices to its mean loss, or to (mean loss, number of correct decisions).
Step = Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class FitResult:
    """The last epoch's mean loss, and its accuracy where the step counts correct decisions (else None)."""

    loss: float
    accuracy: float | None


def fit(module: nn.Module, step: Step, n: int, gen: torch.Generator, epochs: int, batch_size: int, lr: float,
        name: str = "fit", on_epoch: Callable[[int, FitResult], None] | None = None) -> FitResult:
    """Train ``module``'s parameters for ``epochs`` over ``n`` samples; ``module`` is in train mode while it learns
    and in eval mode afterwards. ``name`` labels the progress bar and the per-epoch log line; ``on_epoch(epoch,
    result)``, when given, runs after each epoch's log line (``module`` in eval mode; it must draw nothing from
    ``gen``), e.g. to keep the best weights by a validation figure."""
    opt = torch.optim.AdamW(module.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs * -(-n // batch_size), 1))
    module.train()
    result = FitResult(0.0, None)
    for epoch in range(epochs):
        total, correct, loss_sum = 0, None, 0.0
        bar = tqdm(torch.randperm(n, generator=gen).split(batch_size), desc=f"{name} {epoch + 1}/{epochs}", leave=False)
        for idx in bar:
            out = step(idx)
            loss, hits = out if isinstance(out, tuple) else (out, None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += len(idx)
            loss_sum += float(loss.detach()) * len(idx)
            if hits is not None:
                correct = (correct or 0) + int(hits)
            bar.set_postfix(loss=f"{loss_sum / total:.4f}")
        result = FitResult(loss_sum / max(total, 1), None if correct is None else correct / max(total, 1))
        tqdm.write(f"{name} epoch {epoch + 1}: loss {result.loss:.4f}"
                   + ("" if result.accuracy is None else f" acc {result.accuracy:.4f}"))
        if on_epoch is not None:
            module.eval()
            on_epoch(epoch, result)
            module.train()
    module.eval()
    return result
