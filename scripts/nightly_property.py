#!/usr/bin/env python3
"""Nightly-style property run: many more random layer stacks than CI, with fresh randomness.

    .venv/bin/python scripts/nightly_property.py [EXAMPLES]   (default 300)

Prints the number of examples run and any failure hypothesis found (shrunk).
"""

import os
import subprocess
import sys

examples = sys.argv[1] if len(sys.argv) > 1 else "300"
env = dict(os.environ, BRIDGE_HYPOTHESIS_EXAMPLES=examples, BRIDGE_HYPOTHESIS_RANDOM="1", TF_CPP_MIN_LOG_LEVEL="3")
cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics",
       "tests/test_property_stacks.py"]
sys.exit(subprocess.call(cmd, env=env, cwd=os.path.join(os.path.dirname(__file__), "..")))
