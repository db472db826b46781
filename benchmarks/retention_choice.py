"""Zero-shot accuracy of the base model on candidate offline retention tasks (the suite's choice).

    CURLORA_CACHE=... python benchmarks/retention_choice.py [--n 300] [--limit 200]

Scores SmolLM2-135M (the default model, loaded from the cache where the runs convert it) with
lm-eval on the first ``--n`` rows of each candidate task and writes
``docs/retention_choice.json``. A task is kept when its accuracy exceeds chance by more than
the 95 % half-width the report can resolve at the suite's default ``limit``,
1.96 · sqrt(chance · (1 − chance) / limit) (binomial, at chance), for acc or acc_norm.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CHANCE = {
    "analogy_semantic": 0.25,
    "analogy_syntactic": 0.25,
    "word_sentiment": 0.5,
    "wiki_cloze": 0.25,
}


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curlora.data.assets import cache_root
    from curlora.retention.suite import evaluate, load_tasks

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300, help="rows scored per task")
    parser.add_argument("--limit", type=int, default=200, help="the suite's default limit")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = next((cache_root(None) / "models").glob("smollm2-135m-instruct-*"))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    start = time.perf_counter()
    with torch.inference_mode():
        scores = evaluate(model, tokenizer, load_tasks(list(CHANCE), [], None), args.n, 32)
    seconds = time.perf_counter() - start
    rows = {}
    print(f"| task | chance | acc | acc_norm | n | margin needed | kept |\n|{'---|' * 7}")
    for task, score in scores.items():
        chance = CHANCE[task]
        margin = 1.96 * math.sqrt(chance * (1 - chance) / args.limit)
        kept = max(score.acc, score.acc_norm) - chance > margin
        rows[task] = {**score.__dict__, "chance": chance, "margin": margin, "kept": kept}
        print(
            f"| {task} | {chance:.2f} | {score.acc:.3f} | {score.acc_norm:.3f} | {score.n} "
            f"| {margin:.3f} | {'yes' if kept else 'no'} |"
        )
    print(f"{seconds:.0f} s for {args.n} rows × {len(CHANCE)} tasks")
    record = {
        "model": folder.name,
        "rows_per_task": args.n,
        "default_limit": args.limit,
        "seconds": round(seconds, 1),
        "threads": args.threads,
        "rule": "kept when max(acc, acc_norm) - chance > 1.96*sqrt(chance*(1-chance)/limit)",
        "tasks": rows,
    }
    out = ROOT / "docs" / "retention_choice.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
