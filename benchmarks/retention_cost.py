"""What the retention suite adds to one evaluation point of the default run, as a ratio.

    python benchmarks/retention_cost.py [--rounds 2] [--threads 2] [--limit N]

The default run's evaluation point (SmolLM2-135M with CURLoRA rank 16, every task's head on
its eval split, perplexity on 8,192 corpus tokens; the code paths the runs take) against
``retention=offline`` at its default ``limit`` (lm-eval scoring the same in-memory model).
Rounds alternate the two so that load drifts hit both alike; the ratio is the median over
rounds of retention seconds / evaluation-point seconds (target: at most 0.5). Needs the
registry assets and the [eval] extra.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from curlora.adapters import apply_adapter
    from curlora.data.assets import cache_root
    from curlora.metrics.perplexity import sliding_window_perplexity
    from curlora.models.backbone import load_backbone
    from curlora.models.module import ContinualLitModule
    from curlora.retention.settings import check_retention
    from curlora.retention.suite import evaluate, load_tasks

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="default: the config's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    overrides = ["logger=none", "retention=offline"]
    if args.limit is not None:
        overrides.append(f"retention.limit={args.limit}")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)  # the default run
    cache = cache_root(None)
    settings = check_retention(OmegaConf.to_container(cfg.retention, resolve=True))
    assert settings is not None
    backbone, tokenizer = load_backbone(cfg.model, cache)
    apply_adapter(backbone, cfg.method)
    data = instantiate(cfg.data, _convert_="all")(
        tasks=list(cfg.tasks), tokenizer=tokenizer, cache_dir=cache, seed=int(cfg.seed)
    )
    data.setup()
    module = ContinualLitModule(
        backbone, {t: data.specs[t].num_classes for t in cfg.tasks}, optimizer=None
    ).eval()
    ppl = cfg.callbacks.perplexity
    corpus = data.corpus_ids[: int(ppl.max_tokens)]
    tasks = load_tasks(settings.offline, settings.standard, cache)

    def point() -> None:
        with torch.inference_mode():
            for task in data.tasks:
                for batch in data.eval_dataloader_for(task):
                    module.task_logits(batch, task)
            sliding_window_perplexity(
                backbone, corpus, int(ppl.max_length), int(ppl.stride), int(ppl.batch_size)
            )

    def retention() -> None:
        with torch.inference_mode():
            evaluate(backbone, tokenizer, tasks, settings.limit, settings.batch_size)

    times: dict[str, list[float]] = {"point": [], "retention": []}
    for round_ in range(args.rounds):
        for name, fn in (("point", point), ("retention", retention)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()))
    pairs = zip(times["retention"], times["point"], strict=True)
    ratio = statistics.median(r / p for r, p in pairs)
    print(
        f"threads {args.threads}, {len(tasks)} tasks × {settings.limit} rows: retention "
        f"{statistics.median(times['retention']):.1f}s, evaluation point "
        f"{statistics.median(times['point']):.1f}s; retention / evaluation point {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
