"""Voce inference core: text in, typed predictions out.

Nothing here imports FastAPI or training code; nothing heavy happens at import.
"""
from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
