"""Attention modules and ops (placeholder; filled in by the sequence-models work)."""

from __future__ import annotations

MAPPINGS = ()
