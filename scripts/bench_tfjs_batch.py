"""Benchmark: seconds to check N linear-table rows in tfjs batched (one converter, one Node process)
vs one port.save per row.  Usage: .venv/bin/python scripts/bench_tfjs_batch.py [N]"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_tfjs_batch import measure  # noqa: E402

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(n, Path(tmp)), indent=2, default=str))
