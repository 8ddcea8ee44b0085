"""Spatial padding of channels-last tensors in torch's four padding modes.

'zeros'/'constant' use tf.pad. 'reflect', 'replicate' and 'circular' are
written as a Gather with constant indices along each padded axis: one op
kind that TF, tfjs cpu and tfjs wasm all run, and that needs no MirrorPad
mode mapping (torch's 'replicate' has no TF pad mode at all).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def source_indices(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each output position along an axis of length n, the input index it copies."""
    i = np.arange(-before, n + after)
    if mode == "reflect":
        if before >= n or after >= n:
            raise ValueError(f"reflect padding ({before}, {after}) must be smaller than the size {n}")
        i = np.abs(i)
        return np.where(i >= n, 2 * (n - 1) - i, i)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "circular":
        return np.mod(i, n)
    raise ValueError(f"unknown padding mode {mode!r}")


def pad_axes(x, pads: dict, mode: str = "constant", value: float = 0.0):
    """Pad TF axes: ``pads`` maps axis -> (before, after). Modes as torch names them."""
    pads = {a: (int(b), int(e)) for a, (b, e) in pads.items() if b or e}
    if not pads:
        return x
    x = tf.convert_to_tensor(x)  # a model input arrives as numpy in eager runs
    if any(b < 0 or e < 0 for b, e in pads.values()):
        if mode not in ("zeros", "constant"):
            raise ValueError(f"negative {mode} padding: torch crops only in constant mode")
        x = _crop(x, {a: (max(-b, 0), max(-e, 0)) for a, (b, e) in pads.items()})
        pads = {a: (max(b, 0), max(e, 0)) for a, (b, e) in pads.items()}
    if mode in ("zeros", "constant"):
        paddings = [list(pads.get(a, (0, 0))) for a in range(x.shape.rank)]
        return tf.pad(x, paddings, constant_values=value)
    for axis, (b, e) in sorted(pads.items()):
        n = x.shape[axis]
        if n is None:
            raise ValueError(f"{mode} padding needs a static size on axis {axis}")
        x = tf.gather(x, tf.constant(source_indices(n, b, e, mode), tf.int32), axis=axis)
    return x


def _crop(x, crops: dict):
    """Negative constant padding, as torch's F.pad does it: drop (before, after) items per axis."""
    index = [slice(None)] * x.shape.rank
    for axis, (b, e) in crops.items():
        index[axis] = slice(b, -e if e else None)
    return x[tuple(index)]


def spatial_pad(x, pads, mode: str = "zeros", value: float = 0.0):
    """Pad the spatial axes (1 .. rank-2) of a channels-last tensor; one (before, after) pair each."""
    return pad_axes(x, {1 + k: p for k, p in enumerate(pads)}, mode, value)
