"""Personal data in customer feedback: found (:mod:`.detect`, Microsoft Presidio's recognizers offline, plus
cue-based names in :mod:`.names`), then redacted, masked or kept (:mod:`.redact`) before anything is stored or
logged (:mod:`.logs`).

The analysis itself always runs on the original text, in memory; what a batch stores (its rows' text, original
cells, evidence and messages) is redacted by :func:`voce.service.batches.rows.record` with offsets moved onto
the stored text.  Importing this package is cheap: Presidio and spaCy load with the first detector.
"""
from __future__ import annotations

from voce.service.privacy.modes import KINDS, PII_MODES, PiiMode, placeholder
from voce.service.privacy.redact import Redacted, Redactor, column_kind, mask

__all__ = ["KINDS", "PII_MODES", "PiiMode", "Redacted", "Redactor", "column_kind", "mask", "placeholder"]
