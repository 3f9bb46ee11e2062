"""Attention (SPEC §2 and §3): the Bahdanau decoder of keras-attention and Luong attention."""

from . import bahdanau, luong

__all__ = ["bahdanau", "luong"]
