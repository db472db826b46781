"""Training throughput and peak memory per method, measured side by side.

    python benchmarks/training_throughput.py [--model smollm2_135m] [--methods curlora,lora,...]
        [--batch 8] [--seq 128] [--steps 10] [--rounds 3] [--threads 2]

What a training step of the runs costs: the backbone (``model=<name>``, loaded as the runs
load it) with the method applied, a forward pass to the final hidden state of the last
token (what the classification heads read), a backward pass and an AdamW step over the
trainable parameters, on random token ids (batch × seq). On a GPU (``--model mistral_7b``
with ``trainer=gpu``'s device) it reports tokens/s and the peak CUDA memory of training
(``torch.cuda.max_memory_allocated`` after loading); on CPU the same code on SmolLM2-135M,
with the process's peak resident memory (load included: CPU tensors have no allocator
statistics).

Each (round, method) runs in a fresh process, so peak memory is the method's own. Rounds
visit the methods in a shuffled order, so drift in the machine's load hits them alike;
each ratio to ``lora`` is the median over rounds of the per-round ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_METHODS = "curlora,lora,lora_paper,dora,vera,tinylora,o_lora,head_only"


def measure(model: str, method: str, batch: int, seq: int, steps: int, threads: int) -> dict:
    """One method's training steps in this process: tokens/s and peak memory (bytes)."""
    import torch
    from hydra import compose, initialize_config_module

    import curlora  # noqa: F401  (registers the config resolvers)
    from curlora.adapters import apply_adapter
    from curlora.models.backbone import load_backbone

    torch.set_num_threads(threads)
    with initialize_config_module(config_module="curlora.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}", f"method={method}"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone, _ = load_backbone(cfg.model, Path(cfg.paths.cache_dir))
    trainable = apply_adapter(backbone, cfg.method)
    backbone.to(device).train()
    params = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4) if params else None
    decoder = getattr(backbone, backbone.base_model_prefix)
    vocab = backbone.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=generator).to(device)

    def step() -> None:
        hidden = decoder(input_ids=ids).last_hidden_state[:, -1].float()  # [B, H]
        loss = hidden.pow(2).mean()
        if optimizer is not None:
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: allocator, optimizer state
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "trainable_params": trainable,
        "tokens_per_s": batch * seq * steps / seconds,
        "peak_memory_bytes": peak,
        "device": device.type,
    }


def _child(args: argparse.Namespace, method: str) -> dict:
    command = [sys.executable, __file__, "--child", method, "--model", args.model]
    command += ["--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps)]
    command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{method}: the measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = measure(args.model, args.child, args.batch, args.seq, args.steps, args.threads)
        print(json.dumps(result))
        return
    methods = args.methods.split(",")
    rounds: list[dict[str, dict]] = []
    for _ in range(args.rounds):
        order = random.sample(methods, len(methods))
        rounds.append({m: _child(args, m) for m in order})
    reference = "lora" if "lora" in methods else methods[0]
    print(f"model={args.model}, batch {args.batch} × seq {args.seq}, {args.steps} steps, ", end="")
    print(f"{args.rounds} rounds, device {rounds[0][methods[0]]['device']}")
    print(f"{'method':<12}{'trainable':>12}{'tokens/s':>12}{'× ' + reference:>10}{'peak MiB':>12}")
    for m in methods:
        speed = statistics.median(r[m]["tokens_per_s"] for r in rounds)
        ratio = statistics.median(
            r[m]["tokens_per_s"] / r[reference]["tokens_per_s"] for r in rounds
        )
        peak = statistics.median(r[m]["peak_memory_bytes"] for r in rounds) / 2**20
        count = rounds[0][m]["trainable_params"]
        print(f"{m:<12}{count:>12,}{speed:>12.0f}{ratio:>10.2f}{peak:>12.0f}")


if __name__ == "__main__":
    main()
