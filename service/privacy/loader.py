"""Importing Presidio (:mod:`.detect`) without torch and transformers.

Presidio's package imports spaCy, whose thinc imports torch when it is installed, and its optional transformers
engine imports transformers: about 320 MB of resident memory (432 MB against 110 MB, measured) for libraries the
pattern recognizers never call.  While nothing else runs (one thread: ``voce serve`` sets up its logging before
the server and the model loader start), the import sees them as absent; thinc and Presidio then skip their torch
parts, and a later ``import torch`` (the ONNX export on a first start) loads it normally.  With other threads
running, a blocked import could hit one of them, so the import is then the plain one.
"""
from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType

_DETECT = "voce.service.privacy.detect"
#: what Presidio's import pulls in and never uses here
_UNUSED = ("torch", "transformers")


def detect_module() -> ModuleType:
    """:mod:`voce.service.privacy.detect`, imported without torch and transformers when that is safe."""
    if _DETECT in sys.modules:
        return sys.modules[_DETECT]
    if threading.active_count() > 1:
        return importlib.import_module(_DETECT)
    blocked = [name for name in _UNUSED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # "import torch" raises ImportError meanwhile
    try:
        return importlib.import_module(_DETECT)
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
