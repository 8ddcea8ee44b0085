#!/usr/bin/env python3
"""Nightly-style property run: many more random layer stacks than CI, from a fresh seed each run.

    .venv/bin/python scripts/nightly_property.py [EXAMPLES] [--seed SEED]   (default 300, a random seed)

Runs tests/test_property_stacks.py with hypothesis randomized (not derandomized as
in CI) from SEED, prints the seed first and last (rerun with --seed to reproduce),
then the layer kinds the run checked and any kind it never reached. The fixed bound
is the test file's: max abs error <= 1e-5 * max(1, max|torch|). Exit code 0 when
every stack matched, 1 on any failure (hypothesis prints the shrunk stack).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_FILE = "tests/test_property_stacks.py"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rerun = f"{Path(sys.argv[0]).name} {args.examples} --seed {seed}"
    print(f"hypothesis seed: {seed}  (reproduce: {rerun})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bridge-nightly-") as tmp:
        kinds_file = Path(tmp) / "kinds.json"
        code = _run_pytest(args.examples, seed, kinds_file)
        kinds = json.loads(kinds_file.read_text()) if kinds_file.is_file() else {"covered": {}, "all": []}
    _print_kinds(kinds)
    print(f"{'PASSED' if code == 0 else 'FAILED'}: {args.examples} examples, hypothesis seed {seed}  "
          f"(reproduce: {rerun})")
    return 0 if code == 0 else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("examples", nargs="?", type=int, default=300, help="random stacks to check (default 300)")
    p.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: a fresh random one)")
    return p


def _run_pytest(examples: int, seed: int, kinds_file: Path) -> int:
    env = dict(os.environ, BRIDGE_HYPOTHESIS_EXAMPLES=str(examples), BRIDGE_HYPOTHESIS_RANDOM="1",
               BRIDGE_PROPERTY_KINDS=str(kinds_file), TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics",
           f"--hypothesis-seed={seed}", TEST_FILE]
    return subprocess.call(cmd, env=env, cwd=ROOT)


def _print_kinds(kinds: dict) -> None:
    covered = kinds["covered"]
    print(f"layer kinds checked ({len(covered)} of {len(kinds['all'])}), stacks containing each:")
    for kind in kinds["all"]:
        print(f"  {kind:24s} {covered.get(kind, 0)}")
    worst = kinds.get("worst") or {}
    if worst.get("stack"):
        print(f"largest max abs error / max(1, max|torch|): {worst['error_over_scale']:.3g} (bound 1e-5), in\n"
              f"{worst['stack']}")
    missing = [k for k in kinds["all"] if not covered.get(k)]
    if missing:
        print(f"never checked: {', '.join(missing)}")


if __name__ == "__main__":
    sys.exit(main())
