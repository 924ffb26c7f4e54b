"""Invalid Unicode out of customer text, one document (or one cell) at a time.

A JSON body may carry ``"\\ud800"`` (a lone UTF-16 surrogate) or ``"\\u0000"``; Python keeps both in a ``str``,
but neither can be written as UTF-8 (the response, the tokenizer, SQLite) nor stored by PostgreSQL (no NUL in
text or jsonb).  One such character used to fail a whole request or batch; here it becomes U+FFFD, one code point
for one, so every offset into the text stays valid, and the caller records a warning on the document.
"""
from __future__ import annotations

import re

#: what replaces an invalid code point (the Unicode replacement character)
REPLACEMENT = "\ufffd"
#: NUL, the surrogates (U+D800–U+DFFF: never valid alone in a str meant as text) and the non-characters
#: (U+FDD0–U+FDEF and the last two code points of each of the 17 planes)
_INVALID = re.compile(
    "[\x00\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)


def clean_text(text: str, replacement: str = REPLACEMENT) -> tuple[str, int]:
    """``text`` with every invalid code point replaced by ``replacement``, and how many there were."""
    return _INVALID.subn(replacement, text)


def find_invalid(text: str) -> str | None:
    """The first invalid code point of ``text`` as ``U+XXXX``, or None."""
    m = _INVALID.search(text)
    return None if m is None else f"U+{ord(m.group()):04X}"
