"""How long `sweep --help` takes, end to end (process start, imports, parser), against issue 10's target of
0.5 s; also a few subcommands' --help and the shell completion's `sweep __complete` (one call per TAB).

    python benchmarks/startup.py            # best of 5 each; exit 1 when `sweep --help` misses the target
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.5
COMMANDS = (
    ["--help"],
    ["run", "--help"],
    ["plot", "--help"],
    ["status", "--help"],
    ["figures", "--help"],
    ["__complete", "run", "model="],
    ["__complete", "run", "probe."],
)


def sweep_command() -> list[str]:
    """The installed `sweep` script (what a user types), else this interpreter running the CLI module."""
    script = Path(sys.executable).parent / "sweep"
    if script.exists():
        return [str(script)]
    found = shutil.which("sweep")
    return [found] if found else [sys.executable, "-m", "sweep.cli"]


def best_of(argv: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sweep = sweep_command()
    baseline = best_of([sys.executable, "-c", "pass"], args.repeats)
    print(f"python -c pass (interpreter start): {baseline:.3f} s")
    print(f"{'command':32s}  {'best of %d (s)' % args.repeats:>14}")
    help_s = None
    for words in COMMANDS:
        seconds = best_of([*sweep, *words], args.repeats)
        help_s = seconds if words == ["--help"] else help_s
        print(f"{'sweep ' + ' '.join(words):32s}  {seconds:14.3f}")
    verdict = "meets" if help_s < TARGET_S else "MISSES"
    print(f"sweep --help: {help_s:.3f} s, {verdict} the {TARGET_S} s target ({help_s / TARGET_S:.2f} of it)")
    return 0 if help_s < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
