"""``head=words`` against ``head=linear``: one training step and one evaluation point.

    python benchmarks/words_head.py                          # tiny_llama, synthetic tasks
    python benchmarks/words_head.py --model smollm2_135m     # SmolLM2-135M, offline tasks

Both heads run on one adapted backbone (CURLoRA rank 16, the default method):

- training step: forward + backward of ``ContinualLitModule.task_loss`` on one training
  batch of the first task (linear: cross-entropy of a Linear head; words: the causal-LM
  loss of the answer tokens, the LM head applied only at answer positions);
- evaluation point: every task's eval split scored as ``validation_step`` scores it
  (linear: the head's argmax; words: rank classification over the words and the
  whole-vocabulary exact match), under ``torch.inference_mode``. The perplexity, the
  other half of an evaluation point, runs the same code under both heads and is left out.

Two ratios each, words / linear:

- ``same tokens``: both heads read the words protocol's examples (template + answer), so
  the ratio is the cost of the head itself (the LM head's rows or whole matrix at one
  position per example, against a Linear head);
- ``own examples``: each protocol its own examples; words also pays for the template's
  tokens, a property of the prompts, not of the code.

Rounds alternate the heads so that load drifts hit both alike; each ratio is the median of
the per-round ratios. Do not time while other work runs on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DATA = {"tiny_llama": "synthetic", "smollm2_135m": "offline"}


def _setup(model: str, cache_dir: Path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from curlora.adapters import apply_adapter
    from curlora.models.backbone import load_backbone
    from curlora.models.heads import build_head
    from curlora.models.heads.words import label_token_ids
    from curlora.models.module import ContinualLitModule

    overrides = ["logger=none", f"model={model}", f"data={DATA[model]}"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    backbone, tokenizer = load_backbone(cfg.model, cache_dir)
    apply_adapter(backbone, cfg.method)
    tasks = list(cfg.tasks)
    tokens = label_token_ids(
        {t: list(cfg.data.task_specs[t].label_words) for t in tasks}, tokenizer
    )
    modules, data = {}, {}
    for head_name, answers in (("linear", None), ("words", tokens)):
        extra = {"answer_tokens": answers} if answers is not None else {}
        data[head_name] = instantiate(cfg.data, _convert_="all")(
            tasks=tasks, tokenizer=tokenizer, cache_dir=cache_dir, seed=1311, **extra
        )
        data[head_name].setup()
        head = build_head(OmegaConf.load(ROOT / "configs" / "head" / f"{head_name}.yaml"))
        torch.manual_seed(0)
        modules[head_name] = ContinualLitModule(
            backbone,
            {t: data[head_name].specs[t].num_classes for t in tasks},
            optimizer=None,
            head=head,
            answer_tokens=answers,
        )
        head.prepare_backbone(backbone)
    return tasks, modules, data


def _train_step(module, batch, task) -> Callable[[], None]:
    def step() -> None:
        loss, _ = module.task_loss(batch, task)
        loss.backward()
        module.zero_grad(set_to_none=True)

    return step


def _evaluation(module, data, tasks) -> Callable[[], None]:
    loaders = [(t, list(data.eval_dataloader_for(t))) for t in tasks]

    def evaluate() -> None:
        with torch.inference_mode():
            for task, batches in loaders:
                for batch in batches:
                    features = module.features(batch)
                    module.heads[task](features).argmax(-1)
                    head = module.heads[task]
                    module.head.exact_match(module.backbone, head, features, batch["labels"])

    return evaluate


def _median_ratio(words: Callable[[], None], linear: Callable[[], None], rounds: int) -> float:
    ratios = []
    for _ in range(rounds):
        timed = {}
        for name, work in (("linear", linear), ("words", words)):
            start = time.perf_counter()
            work()
            timed[name] = time.perf_counter() - start
        ratios.append(timed["words"] / timed["linear"])
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(DATA), default="tiny_llama")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tasks, modules, data = _setup(args.model, args.cache_dir)
    for module in modules.values():
        module.train()
    first = tasks[0]
    words_batch = next(iter(data["words"].train_dataloader()))
    linear_batch = next(iter(data["linear"].train_dataloader()))
    for name in ("linear", "words"):  # one warm-up of each path
        _train_step(modules[name], words_batch, first)()
    same = _median_ratio(
        _train_step(modules["words"], words_batch, first),
        _train_step(modules["linear"], words_batch, first),
        args.rounds,
    )
    own = _median_ratio(
        _train_step(modules["words"], words_batch, first),
        _train_step(modules["linear"], linear_batch, first),
        args.rounds,
    )
    shape = tuple(words_batch["input_ids"].shape)
    print(f"{args.model}, {args.threads} threads, {args.rounds} rounds (median of ratios)")
    print(f"training step, batch {shape}: words/linear same tokens x{same:.3f}, own x{own:.3f}")
    for module in modules.values():
        module.eval()
    same = _median_ratio(
        _evaluation(modules["words"], data["words"], tasks),
        _evaluation(modules["linear"], data["words"], tasks),
        args.rounds,
    )
    own = _median_ratio(
        _evaluation(modules["words"], data["words"], tasks),
        _evaluation(modules["linear"], data["linear"], tasks),
        args.rounds,
    )
    print(f"evaluation point (heads): words/linear same tokens x{same:.3f}, own x{own:.3f}")


if __name__ == "__main__":
    main()
