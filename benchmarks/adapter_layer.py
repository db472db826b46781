"""Cost of one adapted Linear, forward + backward, CPU: ratios measured side by side.

    python benchmarks/adapter_layer.py [--repeats 15] [--threads 2]

For each layer (torch ``nn.Linear(in, out)``, no bias as in Mistral-7B's q/k/v), 1024 tokens,
rank 16, float32, the input requiring grad (the layer sits inside a network), it times:

- ``base``: the frozen layer alone;
- ``curlora``: ``CURLoRALinear``'s fast path, (base_out − b)[..., rows] @ Uᵀ @ Cᵀ · α;
- ``lora``: PEFT's LoRA layer at the same rank (injected with ``peft``);
- ``naive``: the reference code's CURLoRA, C U R (out × in) materialised every step.

Variants run interleaved in a shuffled order within each round, so drift in the machine's
load hits them alike; each ratio is the median over rounds of the per-round ratio (the
paired estimate), with the medians of the raw times shown beside. Targets:
curlora/base ≤ 1.03, curlora/lora ≤ 0.95, naive/curlora ≥ 2.5.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from curlora.adapters import CURLoRALinear

TOKENS, RANK, ALPHA = 1024, 16, 1.0
LAYERS = [(4096, 4096), (4096, 1024)]  # (in_features, out_features)
TARGETS = [  # (numerator, denominator, comparison, bound)
    ("curlora", "base", "<=", 1.03),
    ("curlora", "lora", "<=", 0.95),
    ("naive", "curlora", ">=", 2.5),
]


class NaiveCURLoRA(nn.Module):
    """The reference code's forward: x (W + α C U R)ᵀ with C U R built each call."""

    def __init__(self, layer: CURLoRALinear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, r = self.layer.cur_factors()
        w_approx = c @ self.layer.U @ r  # (out, in)
        return self.layer.base_layer(x) + self.layer.alpha * (x @ w_approx.T)


class Holder(nn.Module):
    """A parent for PEFT to inject its LoRA layer into."""

    def __init__(self, proj: nn.Linear) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def variants(in_f: int, out_f: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    base = nn.Linear(in_f, out_f, bias=False).requires_grad_(False)
    cur = CURLoRALinear(base, RANK, ALPHA, seed=0, name="bench")
    with torch.no_grad():
        cur.U.normal_()  # non-zero, as after training (timing does not depend on it)
    lora = inject_adapter_in_model(
        LoraConfig(r=RANK, lora_alpha=RANK, target_modules=["proj"]), Holder(base)
    )
    for n, p in lora.named_parameters():
        p.requires_grad_("lora_" in n)
    return {"base": base, "curlora": cur, "lora": lora, "naive": NaiveCURLoRA(cur)}


def step_fn(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], float]:
    """Seconds for one forward + backward of ``module`` on ``x``."""

    def step() -> float:
        x.grad = None
        for p in module.parameters():
            p.grad = None
        t0 = time.perf_counter()
        module(x).backward(grad)
        return time.perf_counter() - t0

    return step


def bench_layer(in_f: int, out_f: int, repeats: int, warmup: int) -> dict[str, list[float]]:
    x = torch.randn(1, TOKENS, in_f, requires_grad=True)
    grad = torch.randn(1, TOKENS, out_f)
    steps = {k: step_fn(m, x, grad) for k, m in variants(in_f, out_f).items()}
    times: dict[str, list[float]] = {k: [] for k in steps}
    order = list(steps)
    rng = random.Random(0)
    for i in range(warmup + repeats):
        rng.shuffle(order)
        for k in order:
            t = steps[k]()
            if i >= warmup:
                times[k].append(t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {TOKENS} tokens, "
        f"rank {RANK}, fp32, forward+backward, {args.repeats} interleaved rounds "
        f"(+{args.warmup} warm-up)"
    )
    for in_f, out_f in LAYERS:
        times = bench_layer(in_f, out_f, args.repeats, args.warmup)
        medians = {k: statistics.median(v) for k, v in times.items()}
        print(f"\nLinear(in={in_f}, out={out_f})   W: {out_f} × {in_f}")
        print("  median ms: " + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in medians.items()))
        for num, den, op, bound in TARGETS:
            paired = statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))
            ok = paired <= bound if op == "<=" else paired >= bound
            print(
                f"  {num}/{den}: {paired:.3f} (ratio of medians {medians[num] / medians[den]:.3f})"
                f"   target {op} {bound}: {'met' if ok else 'MISSED'}"
            )


if __name__ == "__main__":
    main()
