"""Shared fixtures. Tests that need node skip without it, except under CI (CI=true), where it is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# as the CLI does, before anything imports TensorFlow: the tfjs converter then runs in-process
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted(p.name for p in (ROOT / "models").iterdir() if (p / "bridge.json").is_file())


@pytest.fixture
def node_or_skip():
    from bridge.export.tfjs import node_status

    reason = node_status()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"node tests must run in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def browser_or_skip(node_or_skip):
    from bridge.export.browser import browser_status

    reason = browser_status()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)
