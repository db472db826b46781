"""Grid throughput on this machine: one job on every core, or several jobs side by side?

    python benchmarks/grid_throughput.py [--scale 0.2] [--rounds 1] [--jobs 2]

Three measurements, in one run, so machine load drifts hit them alike:

1. **The hardware ceiling**: the sustained fp32 matrix-product rate (1024³ products, the
   shape class of the model's projections), with all cores and with one.
2. **How close a run's steps come to it**: one training step (forward + backward through
   SmolLM2-135M with the CURLoRA adapter, AdamW) and one evaluation step (forward), on
   batch × seq random tokens, their FLOPs counted by ``torch.utils.flop_counter`` and
   timed: achieved FLOP/s as a fraction of the ceiling.
3. **Grid throughput**: ``--jobs`` copies of a real grid job (the default protocol with
   every record count and the perplexity tokens scaled by ``--scale``) run one after the
   other with all cores each, against all of them at once with ``cores / jobs`` threads
   each (``OMP_NUM_THREADS``, what ``reproduce.workers`` does). Jobs per hour each way and
   their ratio; the order alternates over rounds.

Run it on an idle machine: nothing else may share the cores while it times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = {"convention": 1000, "movie_reviews": 400, "tweets": 400}  # CPU default train_limit


def matmul_rate(threads: int, size: int = 1024, seconds: float = 3.0) -> float:
    """Sustained fp32 GFLOP/s of size³ matrix products on ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    return 2 * size**3 * done / (time.perf_counter() - start) / 1e9


def step_rates(threads: int, batch: int, seq: int, model: str) -> dict[str, tuple[float, float]]:
    """(GFLOP per step, achieved GFLOP/s) of a training and an evaluation step."""
    import torch
    from hydra import compose, initialize_config_module
    from torch.utils.flop_counter import FlopCounterMode

    import curlora  # noqa: F401  (registers the config resolvers)
    from curlora.adapters import apply_adapter
    from curlora.models.backbone import load_backbone

    torch.set_num_threads(threads)
    with initialize_config_module(config_module="curlora.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["method=curlora", f"model={model}"])
    backbone, _ = load_backbone(cfg.model, Path(cfg.paths.cache_dir))
    apply_adapter(backbone, cfg.method)
    params = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    decoder = getattr(backbone, backbone.base_model_prefix)
    vocab = backbone.config.get_text_config().vocab_size
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(0))

    def train() -> None:
        hidden = decoder(input_ids=ids).last_hidden_state[:, -1]  # [B, H]: what heads read
        hidden.pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def evaluate() -> None:
        with torch.no_grad():
            decoder(input_ids=ids)

    out = {}
    for name, step in (("training step", train), ("evaluation step", evaluate)):
        backbone.train(name == "training step")
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        flops = counter.get_total_flops()
        step()  # warm-up
        start, n = time.perf_counter(), 3
        for _ in range(n):
            step()
        seconds = (time.perf_counter() - start) / n
        out[name] = (flops / 1e9, flops / seconds / 1e9)
    return out


def job_command(run_dir: Path, scale: float, tiny: bool) -> list[str]:
    if tiny:  # the test suite's smoke run: tiny model, synthetic data
        return [sys.executable, str(REPO / "train.py"), "debug=tiny", "logger=none",
                f"hydra.run.dir={run_dir}"]  # fmt: skip
    limits = [
        f"data.task_specs.{task}.{key}={max(8, round(n * scale))}"
        for task, train in TASKS.items()
        for key, n in (("train_limit", train), ("eval_limit", 200), ("validation_limit", 200))
    ]
    return [
        sys.executable,
        str(REPO / "train.py"),
        "logger=none",
        f"callbacks.perplexity.max_tokens={round(8192 * scale)}",
        "checkpoint.every_n_train_steps=0",
        "reuse_initial_evaluation=false",  # every job does its whole work
        f"hydra.run.dir={run_dir}",
        *limits,
    ]


def run_jobs(
    jobs: int, parallel: bool, scale: float, cores: int, workdir: Path, tiny: bool
) -> float:
    """Wall seconds for ``jobs`` grid jobs, one after the other or all at once."""
    threads = max(1, cores // jobs) if parallel else cores
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.setdefault("WANDB_MODE", "disabled")
    # The jobs run in ``workdir``; without this they would look for the model and data in
    # ``workdir/.cache`` (the default cache is under where a command starts) and download
    # them again, where this process found them under the directory it was started in.
    env.setdefault("CURLORA_CACHE", str(Path.cwd() / ".cache"))
    stamp = time.strftime("%H%M%S")
    dirs = [workdir / f"{'par' if parallel else 'seq'}-{stamp}-{k}" for k in range(jobs)]
    start = time.perf_counter()
    if parallel:
        procs = [
            subprocess.Popen(
                job_command(d, scale, tiny), env=env, cwd=workdir, stdout=subprocess.DEVNULL
            )
            for d in dirs
        ]
        codes = [p.wait() for p in procs]
    else:
        codes = [
            subprocess.run(
                job_command(d, scale, tiny), env=env, cwd=workdir, stdout=subprocess.DEVNULL
            ).returncode
            for d in dirs
        ]
    if any(codes):
        raise SystemExit(f"a benchmark job failed (exit codes {codes}); see {workdir}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.2, help="share of the default job")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64, help="typical padded batch length")
    parser.add_argument("--tiny", action="store_true", help="tiny model and data (a smoke test)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"cores: {cores}")
    peak = {t: matmul_rate(t) for t in sorted({cores, 1})}
    for t, rate in peak.items():
        print(f"fp32 matmul 1024³, {t} thread(s): {rate:.1f} GFLOP/s")
    for name, (gflop, rate) in step_rates(
        cores, args.batch, args.seq, "tiny_llama" if args.tiny else "smollm2_135m"
    ).items():
        print(
            f"{name} (batch {args.batch} × {args.seq} tokens, {cores} threads): {gflop:.1f} "
            f"GFLOP, {rate:.1f} GFLOP/s = {rate / peak[cores]:.0%} of the matmul rate"
        )
    seq_s: list[float] = []
    par_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="grid-throughput-") as tmp:
        for r in range(args.rounds):
            for parallel in (False, True) if r % 2 == 0 else (True, False):
                wall = run_jobs(args.jobs, parallel, args.scale, cores, Path(tmp), args.tiny)
                (par_s if parallel else seq_s).append(wall)
                mode = f"{args.jobs} at once" if parallel else "one after the other"
                print(f"round {r + 1}: {args.jobs} jobs {mode}: {wall:.0f} s", flush=True)
    seq_rate = args.jobs * 3600 / (sum(seq_s) / len(seq_s))
    par_rate = args.jobs * 3600 / (sum(par_s) / len(par_s))
    print(f"jobs per hour (scale {args.scale}): one at a time {seq_rate:.1f}, "
          f"{args.jobs} at once {par_rate:.1f}; ratio {par_rate / seq_rate:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
