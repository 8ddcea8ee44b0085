"""The one place that decides how a torch tensor is laid out inside the TF graph.

TF and tfjs run convolutions and pooling channels-last (NHWC) on CPU, while
torch is channels-first. Instead of transposing around every conv, each value
in the generated graph carries a ``Layout`` that says how its TF tensor relates
to the torch tensor it stands for:

* ``Perm(perm)``: ``tf_tensor == torch_tensor.permute(perm)``. Identity for
  values that look exactly like torch; ``(0, 2, 3, 1)`` for NHWC feature maps.
  A torch ``permute`` then costs nothing: it only changes the layout.
* ``Flat(inner, perm)``: a ``(N, K)`` tensor whose columns are a permutation of
  torch's, produced by flattening a permuted feature map. A following Linear
  absorbs the permutation into its weight rows, so ``flatten`` after a conv
  matches torch's element order with no transpose at run time.

Transposes are emitted only where a consumer needs a layout the value does not
have (``convert_expr``). Everything here is pure and testable without TF.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


@dataclass(frozen=True)
class Perm:
    """``tf == torch.permute(perm)``."""

    perm: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.perm)

    @property
    def is_identity(self) -> bool:
        return self.perm == tuple(range(len(self.perm)))

    def tf_axis(self, torch_dim: int) -> int:
        """The TF axis that holds torch dim ``torch_dim`` (negative dims allowed)."""
        d = torch_dim % self.rank
        return self.perm.index(d)

    def tf_shape(self, torch_shape) -> tuple:
        return tuple(torch_shape[p] for p in self.perm)

    def describe(self) -> str:
        if self.is_identity:
            return "torch"
        if self.perm == channels_last(self.rank).perm:
            return "channels_last"
        return f"perm{list(self.perm)}"


@dataclass(frozen=True)
class Flat:
    """A torch ``(N, prod(inner))`` tensor stored as ``flatten(inner_tensor.permute(0, *perm+1))``.

    ``inner`` is the torch shape of the flattened dims and ``perm`` their order in TF.
    """

    inner: tuple[int, ...]
    perm: tuple[int, ...]

    rank = 2
    is_identity = False

    def columns(self) -> np.ndarray:
        """``tf[:, j] == torch[:, columns()[j]]``."""
        n = int(np.prod(self.inner))
        return np.arange(n).reshape(self.inner).transpose(self.perm).reshape(-1)

    def describe(self) -> str:
        return f"flat{list(self.perm)}"


Layout = Perm | Flat


def identity(rank: int) -> Perm:
    return Perm(tuple(range(rank)))


def channels_last(rank: int) -> Perm:
    """NC[D]HW -> N[D]HWC for rank >= 3; identity below that."""
    if rank < 3:
        return identity(rank)
    return Perm((0, *range(2, rank), 1))


def permuted(layout: Perm, torch_perm: tuple[int, ...]) -> Perm:
    """Layout of ``x.permute(torch_perm)`` when the TF tensor is left untouched."""
    inv = inverse(torch_perm)
    return Perm(tuple(inv[p] for p in layout.perm))


def flattened(layout: Perm, torch_shape: tuple[int, ...]) -> Layout:
    """Layout of ``x.flatten(1)`` when the TF tensor is reshaped to (N, -1) as stored."""
    if layout.is_identity:
        return identity(2)
    if layout.perm[0] != 0:
        raise ValueError("flatten(1) of a value whose batch dim moved")
    inner_perm = tuple(p - 1 for p in layout.perm[1:])
    return Flat(tuple(torch_shape[1:]), inner_perm)


def convert_expr(var: str, src: Layout, dst: Layout) -> str | None:
    """TF source that turns ``var`` from layout ``src`` into ``dst``; None when they match."""
    if src == dst:
        return None
    if isinstance(src, Flat):
        inner_tf = [src.inner[p] for p in src.perm]
        back = [0, *(1 + p for p in inverse(src.perm))]
        expr = f"tf.reshape(tf.transpose(tf.reshape({var}, [-1, {', '.join(map(str, inner_tf))}]), {back}), [-1, {int(np.prod(src.inner))}])"
        return expr if (isinstance(dst, Perm) and dst.is_identity) else _perm_expr(expr, identity(2), dst)
    if isinstance(dst, Flat):  # torch order -> the stored flatten order (a module called on both kinds)
        torch_order = _perm_expr(var, src, identity(2)) if not src.is_identity else var
        order = [0, *(1 + p for p in dst.perm)]
        return (f"tf.reshape(tf.transpose(tf.reshape({torch_order}, [-1, {', '.join(map(str, dst.inner))}]), "
                f"{order}), [-1, {int(np.prod(dst.inner))}])")
    return _perm_expr(var, src, dst)


def _perm_expr(var: str, src: Perm, dst: Perm) -> str:
    inv = inverse(src.perm)
    q = [inv[d] for d in dst.perm]  # tf_dst = tf_src.transpose(q)
    return f"tf.transpose({var}, {q})"


def to_torch(array: np.ndarray, layout: Layout) -> np.ndarray:
    """A TF value (as numpy) back in torch's layout: used by parity to compare."""
    if isinstance(layout, Flat):
        out = np.empty_like(array)
        out[:, layout.columns()] = array
        return out
    return np.transpose(array, inverse(layout.perm))


def to_tf(array: np.ndarray, layout: Perm) -> np.ndarray:
    """A torch value (as numpy) in the TF layout ``layout``: how inputs are fed to a channels-last boundary."""
    return np.ascontiguousarray(np.transpose(array, layout.perm))
