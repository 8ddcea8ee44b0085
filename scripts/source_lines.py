"""Print the size of the generated model_tf.py beside the torch source it came from (a measurement, not a test).

    .venv/bin/python scripts/source_lines.py

For each models/ entry and for examples/vision.py's ResNet-18: the lines of model_tf.py, its classes,
the lines of the torch classes the model is made of (their source, as inspect finds it), and the
lines of bridge_layers.py that every standalone model_tf.py imports.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bridge  # noqa: E402
from bridge import codegen  # noqa: E402
from bridge.target import instantiate, resolve  # noqa: E402


def torch_lines(module: torch.nn.Module) -> int:
    """Source lines of the user-defined classes in the model (torch's own classes not counted)."""
    seen, total = set(), 0
    for m in module.modules():
        cls = type(m)
        if cls in seen or cls.__module__.startswith("torch."):
            continue
        seen.add(cls)
        try:
            total += len(inspect.getsource(cls).splitlines())
        except (OSError, TypeError):
            pass
    return total


def row(name: str, module: torch.nn.Module, examples: tuple) -> tuple:
    port = bridge.convert(module, examples)
    src = port.source
    return (name, len(src.splitlines()), ", ".join(re.findall(r"^class (\w+)\(", src, re.M)), torch_lines(module))


def main() -> None:
    rows = []
    for folder in sorted((ROOT / "models").iterdir()):
        if not (folder / "bridge.json").is_file():
            continue
        target = resolve(str(folder), weights=None, inputs=[], kwargs=None)
        module = instantiate(target)
        gen = torch.Generator().manual_seed(0)
        rows.append(row(folder.name, module.eval(), tuple(s.example(gen) for s in target.inputs)))
    from examples.vision import resnet18

    rows.append(row("resnet18 (examples/vision.py)", resnet18(1000), (torch.randn(1, 3, 224, 224),)))
    print(f"{'model':32} {'model_tf.py lines':>18} {'torch source lines':>19}  classes")
    for name, lines, classes, tlines in rows:
        print(f"{name:32} {lines:>18} {tlines:>19}  {classes}")
    print(f"bridge_layers.py (shared by every standalone model_tf.py): {len(codegen.standalone_layers().splitlines())} lines")


if __name__ == "__main__":
    main()
