"""One evaluation point of the default run, old path against new, measured side by side.

    python benchmarks/evaluation.py [--rounds 3] [--threads 2] [--ppl-tokens 8192]

The default run's setting: SmolLM2-135M with CURLoRA rank 16, the offline tasks (200 eval
records each), perplexity on 8,192 corpus tokens with windows of 512 and stride 256.

- head evaluation, old: each task's eval split in dataset order, batches of 32 padded to
  their longest example, under ``torch.no_grad``; new: batches of similar length
  (``TaskSequenceDataModule.eval_dataloader_for``) under ``torch.inference_mode``.
  The predictions must be identical (checked: the script stops otherwise).
- perplexity, old: ``torch.no_grad``, 4 windows per forward; new: the code path the runs
  take (``sliding_window_perplexity``: inference mode, the configured windows per forward).
  Same number to 1e-6 relative (checked).
- reuse: what the runs skip altogether. The evaluation before training is shared by every
  job of a sweep that starts at the base model (``curlora.run.evaluation_cache``), and a
  ``head_only`` run measures its frozen backbone once; both are reported as the share of
  a run's evaluation points that no longer run.

Rounds alternate old and new so that load drifts hit both alike; each ratio is the median
over rounds of the per-round ratio. Needs the registry assets (the first run fetches them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _setup(ppl_tokens: int):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from curlora.adapters import apply_adapter
    from curlora.models.backbone import load_backbone
    from curlora.models.module import ContinualLitModule

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["logger=none"])  # the default run
    cfg.paths.cache_dir = str(ROOT / ".cache")
    backbone, tokenizer = load_backbone(cfg.model, Path(cfg.paths.cache_dir))
    apply_adapter(backbone, cfg.method)
    data = instantiate(cfg.data, _convert_="all")(
        tasks=list(cfg.tasks), tokenizer=tokenizer, cache_dir=cfg.paths.cache_dir, seed=1311
    )
    data.setup()
    torch.manual_seed(0)
    module = ContinualLitModule(
        backbone, {t: data.specs[t].num_classes for t in cfg.tasks}, optimizer=None
    ).eval()
    corpus = data.corpus_ids[:ppl_tokens]
    return cfg, module, data, corpus


def _old_loaders(data) -> list[tuple[str, DataLoader]]:
    return [
        (
            t,
            DataLoader(
                data.prepared[t].eval, batch_size=data.eval_batch_size, collate_fn=data.collate
            ),
        )
        for t in data.tasks
    ]


def _heads(module, loaders, context) -> dict[str, list[int]]:
    predictions: dict[str, list[int]] = {}
    with context():
        for task, loader in loaders:
            for batch in loader:
                logits = module.task_logits(batch, task)
                for i, p in zip(batch["index"].tolist(), logits.argmax(-1).tolist(), strict=True):
                    predictions.setdefault(task, []).append((i, p))
    return {t: [p for _, p in sorted(v)] for t, v in predictions.items()}


def _old_perplexity(model, ids, max_length, stride, batch_size) -> float:
    """The path the runs took before: no_grad, the same windows and logits_to_keep."""
    from curlora.metrics import perplexity as ppl_module

    with torch.no_grad():
        original = torch.inference_mode
        ppl_module.torch.inference_mode = torch.no_grad  # type: ignore[assignment]
        try:
            return ppl_module.sliding_window_perplexity(
                model, ids, max_length, stride, batch_size=batch_size
            ).ppl
        finally:
            ppl_module.torch.inference_mode = original  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ppl-tokens", type=int, default=8192)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from curlora.metrics.perplexity import sliding_window_perplexity

    cfg, module, data, corpus = _setup(args.ppl_tokens)
    ppl_cfg = cfg.callbacks.perplexity
    new_loaders = [(t, data.eval_dataloader_for(t)) for t in data.tasks]
    padded = {
        name: sum(len(b["input_ids"].flatten()) for _, lo in loaders for b in lo)
        for name, loaders in (("old", _old_loaders(data)), ("new", new_loaders))
    }
    real = sum(len(e["input_ids"]) for t in data.tasks for e in data.prepared[t].eval)
    print(f"eval tokens incl. padding: old {padded['old']}, new {padded['new']}, real {real}")
    times: dict[str, list[float]] = {
        k: [] for k in ("heads_old", "heads_new", "ppl_old", "ppl_new")
    }
    for round_ in range(args.rounds):
        start = time.perf_counter()
        old_pred = _heads(module, _old_loaders(data), torch.no_grad)
        times["heads_old"].append(time.perf_counter() - start)
        start = time.perf_counter()
        new_pred = _heads(module, new_loaders, torch.inference_mode)
        times["heads_new"].append(time.perf_counter() - start)
        if old_pred != new_pred:
            raise SystemExit("head predictions differ between the old and the new path")
        start = time.perf_counter()
        old_ppl = _old_perplexity(module.backbone, corpus, ppl_cfg.max_length, ppl_cfg.stride, 4)
        times["ppl_old"].append(time.perf_counter() - start)
        start = time.perf_counter()
        new_ppl = sliding_window_perplexity(
            module.backbone, corpus, ppl_cfg.max_length, ppl_cfg.stride, ppl_cfg.batch_size
        ).ppl
        times["ppl_new"].append(time.perf_counter() - start)
        if abs(new_ppl - old_ppl) > 1e-6 * old_ppl:
            raise SystemExit(f"perplexity differs: {old_ppl} vs {new_ppl}")
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()))

    times["point_old"] = [a + b for a, b in zip(times["heads_old"], times["ppl_old"], strict=True)]
    times["point_new"] = [a + b for a, b in zip(times["heads_new"], times["ppl_new"], strict=True)]
    print(
        f"\nthreads {args.threads}, rounds {args.rounds}, medians of per-round ratios (old / new):"
    )
    for label, key in (
        ("head evaluation", "heads"),
        ("perplexity", "ppl"),
        ("evaluation point", "point"),
    ):
        old, new = times[f"{key}_old"], times[f"{key}_new"]
        ratio = statistics.median(a / b for a, b in zip(old, new, strict=True))
        print(
            f"  {label:17} {ratio:.2f}x  "
            f"({statistics.median(old):.1f}s -> {statistics.median(new):.1f}s)"
        )
    print("  identical predictions: yes; perplexity equal to 1e-6 relative: yes")
    print(
        "  skipped altogether: the evaluation before training of every further sweep job "
        "that starts at the base model (1 of 4 points), and for head_only every "
        "perplexity and feature pass after the first (3 of 4 points)"
    )


if __name__ == "__main__":
    main()
