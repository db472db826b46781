"""What sharing the bootstrap's row draws saves when a committed grid's report is rebuilt.

    python benchmarks/report_bootstrap.py [--rounds 3] [--grid table1_cpu]

``curlora-reproduce --report-only`` of a committed grid (REPORT.md, summary.md, figures),
built into a temporary folder, once with the report's shared row draws
(``stats.resampled_row_counts``, drawn once per task set) and once with every statistic
drawing them anew, as each did before the draws were shared. Rounds alternate the two so
that load drifts hit both alike; the ratio is the median over rounds of shared / fresh
seconds. Both builds must write the same bytes (checked here: the draws are the same).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    from curlora import reproduce
    from curlora.reporting import stats

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--grid", default="table1_cpu", help="a grid under docs/reproduction")
    args = parser.parse_args()

    shared = stats.resampled_row_counts

    def fresh(seed: int, replicates: int, rows: tuple[int, ...]) -> tuple:
        return shared.__wrapped__(seed, replicates, rows)  # drawn anew on every call

    draws: list = []  # the cache's hits and misses after each shared build
    work = Path(tempfile.mkdtemp(prefix="report_bootstrap_"))
    readme = work / "README.md"

    def build(name: str) -> tuple[float, dict[str, bytes]]:
        shared.cache_clear()
        stats.resampled_row_counts = shared if name == "shared" else fresh
        shutil.copyfile(ROOT / "README.md", readme)
        out = work / name
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        code = reproduce.main(
            [
                "--report-only",
                f"reproduce={args.grid}",
                f"reproduce.results_dir={ROOT / 'docs' / 'reproduction' / args.grid}",
                f"reproduce.report_dir={out}",
                f"reproduce.readme={readme}",
            ]
        )
        seconds = time.perf_counter() - start
        stats.resampled_row_counts = shared
        if name == "shared":
            draws.append(shared.cache_info())
        if code != 0:
            sys.exit(f"the report build exited {code}")
        written = {p.name: p.read_bytes() for p in sorted(out.glob("*.md"))}
        return seconds, written

    build("shared")  # imports, the BLAS threads and the page cache warm before any timing
    times: dict[str, list[float]] = {"shared": [], "fresh": []}
    for round_ in range(args.rounds):
        texts = {}
        for name in ("shared", "fresh"):
            seconds, texts[name] = build(name)
            times[name].append(seconds)
        if texts["shared"] != texts["fresh"]:
            sys.exit("the two builds wrote different reports")
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    info = draws[-1]
    ratio = statistics.median(s / f for s, f in zip(times["shared"], times["fresh"], strict=True))
    print(
        f"{args.grid} --report-only: shared draws {statistics.median(times['shared']):.2f}s "
        f"({info.hits} hits, {info.misses} draws), fresh draws "
        f"{statistics.median(times['fresh']):.2f}s; shared / fresh {ratio:.2f}"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
