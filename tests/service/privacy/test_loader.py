"""Presidio is imported without torch and transformers, and they still import normally afterwards."""
from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from voce.service.privacy.loader import detect_module
detector = detect_module().default_detector()
assert detector.find("scrivetemi a mario.rossi@example.com", "it"), "the detector works"
assert "torch" not in sys.modules and "transformers" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)
import torch
import transformers.utils
assert transformers.utils.is_torch_available(), "a later import of torch and transformers is the normal one"
print("ok")
"""


def test_presidio_without_torch_then_torch_as_usual() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_with_other_threads_running_the_import_is_the_plain_one() -> None:
    probe = "import threading, sys, time\nthreading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n" + (
        "import torch\nfrom voce.service.privacy.loader import detect_module\ndetect_module()\n"
        "assert sys.modules['torch'] is not None\nprint('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
