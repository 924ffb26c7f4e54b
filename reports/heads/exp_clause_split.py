"""The clause splitter shared by exp_clause and exp_clausedet."""
from __future__ import annotations

import re

CUT = re.compile(r"\s*[,;:]\s+|\s+[-–—]\s+|\s+(?=(?:but|however|although|though|whereas|yet|ma|però|tuttavia|anche se|mentre|invece|sebbene|nonostante)\b)", re.I)
def clauses(t: str) -> list[str]:
    parts = [p.strip() for p in CUT.split(t) if p and p.strip()]
    out: list[str] = []
    for p in parts:
        if out and len(re.findall(r"\w+", p)) < 2:
            out[-1] = out[-1] + " " + p
        elif out and len(re.findall(r"\w+", out[-1])) < 2:
            out[-1] = out[-1] + " " + p
        else:
            out.append(p)
    return out or [t]
