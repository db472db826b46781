"""Probe-based forgetting: a fresh linear probe per task on the frozen features.

After each task, every task seen so far gets a new linear classifier fitted on the
features the backbone gives its training examples (final hidden state of the last
non-padding token, the same features its head reads) and scored on its eval split. The
probe matrix P[i][j] is that accuracy after task i. The head matrix R (``accuracy_matrix``)
asks "does task j's *head* still work?"; P asks "are task j's classes still linearly
separable in what the backbone computes?". A drop in R with a flat P is forgetting of the
head–feature alignment, not of the knowledge ("spurious forgetting": Zheng et al., "Spurious
Forgetting in Continual Learning of Language Models", ICLR 2025).

The probe is multinomial logistic regression with an L2 penalty on standardised features
(mean and std of the training features), fitted to convergence by L-BFGS in float64 from
zeros: deterministic, so a rerun gives the same matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F

Batch = Mapping[str, torch.Tensor]


@torch.no_grad()
def collect_features(
    features: Callable[[Batch], torch.Tensor], batches: Iterable[Batch], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, H] (float64, CPU) and labels [N] of every example in ``batches``."""
    xs, ys = [], []
    for batch in batches:
        on_device = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        xs.append(features(on_device).double().cpu())
        ys.append(batch["labels"].cpu())
    return torch.cat(xs), torch.cat(ys)


def fit_linear_probe(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logistic regression on x [N, H] → labels y [N]; returns ``predict(x) -> [N]``.

    Minimises mean cross-entropy + l2/2 · ‖W‖² (bias unpenalised) over standardised
    features with ``torch.optim.LBFGS`` (strong-Wolfe line search).
    """
    mean = x.mean(dim=0)
    std = x.std(dim=0).clamp_min(1e-8)  # a constant feature carries nothing: scale 1
    z = (x - mean) / std
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, y) + l2 / 2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    w, b = weight.detach(), bias.detach()

    def predict(features: torch.Tensor) -> torch.Tensor:
        return (((features - mean) / std) @ w.T + b).argmax(dim=-1)

    return predict


def probe_accuracy(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    l2: float,
    max_iter: int,
) -> float:
    """Accuracy on ``test`` of a probe fitted on ``train`` ((features, labels) pairs)."""
    predict = fit_linear_probe(*train, num_classes, l2, max_iter)
    x, y = test
    return float((predict(x) == y).double().mean())
