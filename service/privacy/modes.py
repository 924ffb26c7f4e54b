"""How personal data found in a text is stored: the one small vocabulary the settings, the API and the batches share.

Kept free of heavy imports (Presidio, spaCy) so settings and schemas can name a mode without loading a detector.
"""
from __future__ import annotations

from typing import Literal, get_args

#: ``redact``: replaced by its type (``<EMAIL>``); ``mask``: same length and shape, most characters starred
#: (``m****.r****@e******.com``); ``keep``: stored as written
PiiMode = Literal["redact", "mask", "keep"]
PII_MODES: tuple[PiiMode, ...] = get_args(PiiMode)

#: the kinds of personal data Voce finds, and the placeholder ``redact`` writes for each
KINDS: tuple[str, ...] = (
    "EMAIL", "PHONE", "IBAN", "CARD", "CODICE_FISCALE", "PARTITA_IVA", "ID_DOCUMENT", "NAME", "ADDRESS", "BIRTH_DATE",
)


def placeholder(kind: str) -> str:
    """What ``redact`` writes in place of a finding: its kind in angle brackets."""
    return f"<{kind}>"
