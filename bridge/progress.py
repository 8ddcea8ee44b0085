"""Progress of the long parts of a conversion (weights into TF, tfjs shards, runner sets), for the CLI's bars.

Code deep in the pipeline says what it is doing with ``task(description, total)``::

    with progress.task("weights into TF variables", total=n_bytes, unit="B") as advance:
        for ...:
            advance(nbytes)

Nothing is shown unless a reporter is active (``active(reporter)``; the CLI activates one that draws
rich bars under its step bar), so library calls stay silent and cost nothing. A reporter shows only
tasks at least ``min_total`` big (for bytes: 64 MB), so small models do not flicker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

_reporter = None
MIN_BYTES = 64 * 2**20  # smaller byte tasks are not drawn: they end before a bar is readable


@contextlib.contextmanager
def active(reporter) -> Iterator[None]:
    """Route ``task`` to ``reporter`` (``start(description, total, unit) -> (advance, finish)``) meanwhile."""
    global _reporter
    before, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = before


@contextlib.contextmanager
def task(description: str, total: float, unit: str = "") -> Iterator[Callable[[float], None]]:
    """A sub-task of the current step; yields ``advance(amount)``."""
    if _reporter is None or not total or (unit == "B" and total < MIN_BYTES):
        yield lambda amount=1: None
        return
    advance, finish = _reporter.start(description, total, unit)
    try:
        yield advance
    finally:
        finish()
