"""The last step of a save, and its undo: a verified folder replaces the old export, and what a killed
run left beside an export is cleaned up (save.py's docstring has the protocol; faults.py the kill points).

No TensorFlow here: ``bridge convert`` recovers before anything slow is imported.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from .faults import fault


def replace_with(tmp: Path, out: Path) -> None:
    """Move the verified folder into place; an old export is removed only after the new one is in."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        fault("replace")
        os.replace(tmp, out)
        fault("replaced")
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def recover(out: Path) -> list[str]:
    """Undo what a killed save left beside ``out``; returns what was done (for the log)."""
    done = []
    if not out.parent.is_dir():
        return done
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(tmp|old)-(\d+)(-.*)?")
    for path in sorted(out.parent.iterdir()):
        m = pattern.fullmatch(path.name)
        if not m or _alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not out.exists():
            os.replace(path, out)
            done.append(f"restored {out} from an interrupted --force")
        else:
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path.name} left by an interrupted run")
    return done


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
