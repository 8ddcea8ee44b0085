"""Fault injection for the crash-safety tests: ``BRIDGE_FAULT=<point>`` SIGKILLs the process there.

A hard kill cannot clean up after itself; save.py's ``recover`` must make the next run put things
right, and these points let the tests prove it at every stage of an export:

- ``model_tf``, ``savedmodel``, ``tfjs``, ``report``: after that step, inside the temporary folder;
- ``shard``: in the middle of writing the first tfjs weight shard (half its bytes are on disk);
- ``node``, ``browser``: while the Node runner (or the browser runner) is running, its process alive;
- ``replace``: between moving the old export aside and moving the new one in;
- ``replaced``: after the new export is in place, before the old one is removed.
"""

from __future__ import annotations

import os
import signal

POINTS = ("model_tf", "savedmodel", "tfjs", "shard", "node", "browser", "report", "replace", "replaced")


def fault(point: str) -> None:
    if os.environ.get("BRIDGE_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def armed(point: str) -> bool:
    return os.environ.get("BRIDGE_FAULT") == point
