"""Attention layers (placeholder; filled in by the sequence-models work)."""

from __future__ import annotations

__all__: list[str] = []
