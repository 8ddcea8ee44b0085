"""Run torch-only work in a forked child while this process does something else (importing TensorFlow).

``bridge convert`` spends 5-10 s importing TF and as long again tracing and planning the torch model.
Both are Python-bound, so threads cannot overlap them (the GIL); a forked child can. The child
inherits the loaded model, runs ``work()`` on one torch thread, and hands its result back pickled
(cloudpickle: a plan holds weight transforms written as lambdas).

Whatever goes wrong on the child's side -- no ``fork`` on this platform, a result that does not
pickle, a child that dies or stops making progress -- the work runs here instead, so the outcome is
the same as without the overlap, only slower. Exceptions the work raises (an unsupported model, a
bad input) travel back and are raised here.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from typing import TypeVar

import cloudpickle

T = TypeVar("T")
STALL_S = 30.0  # a child with no CPU time for this long is stuck (e.g. a lock held at fork): run here instead


def beside(work: Callable[[], T], meanwhile: Callable[[], object]) -> tuple[T, bool]:
    """``work()``'s result (or its exception, raised), computed in a forked child while ``meanwhile()`` runs here.

    Returns ``(result, forked)``; ``forked`` is False when the work had to run in this process.
    """
    if not hasattr(os, "fork"):
        meanwhile()
        return work(), False
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        os.close(read_end)
        _child(work, write_end)
    os.close(write_end)
    payload, ended = None, False
    try:
        meanwhile()
        payload, ended = _collect(pid, read_end)
    finally:
        os.close(read_end)
        if not ended:  # stalled, or this process was interrupted: stop the child
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if payload is None:  # the child could not deliver: same work, here
        return work(), False
    kind, value = payload
    if kind == "raise":
        raise value
    return value, True


def _child(work: Callable[[], object], fd: int) -> None:
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C or the parent's kill ends the child at once
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent()
        import torch

        # libgomp's thread pool does not survive fork: a parallel region with more than one thread
        # hangs in the child (measured: a matmul after the parent ran one). One thread is safe, and the
        # parent is busy on the other core anyway.
        torch.set_num_threads(1)
        try:
            payload = ("ok", work())
        except Exception as exc:
            payload = ("raise", exc)
        try:
            data = cloudpickle.dumps(payload)
        except Exception:  # an unpicklable result or exception: the parent runs the work itself
            data = b""
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except BaseException:
        code = 1
    finally:  # no flush of stdout (the parent's unwritten output would print twice), no atexit handlers
        os._exit(code)  # (the parent's temporary folders and files are the parent's)  # no atexit handlers: the parent's temporary folders and files are the parent's


def _die_with_parent() -> None:
    """Linux: the kernel kills this child when the parent dies (a SIGKILLed convert leaves no orphan tracing)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the orphan ends when it finds the pipe closed
        pass


def _collect(pid: int, fd: int) -> tuple[object, bool]:
    """(the child's unpickled payload, whether the child closed its end), the payload None if the child
    died, delivered nothing, stalled or sent what does not unpickle."""
    chunks, last_cpu, last_change = [], _cpu_ticks(pid), time.monotonic()
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            last_change = time.monotonic()
            continue
        cpu = _cpu_ticks(pid)
        if cpu is None or cpu != last_cpu:
            last_cpu, last_change = cpu, time.monotonic()
        elif time.monotonic() - last_change > STALL_S:
            return None, False
    try:
        return (cloudpickle.loads(b"".join(chunks)) if chunks else None), True
    except Exception:
        return None, True


def _cpu_ticks(pid: int) -> int | None:
    """The child's user + system CPU ticks (Linux /proc); None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None
