"""File helpers shared by the converters, the adapter merge and bundles: checksums and atomic folder swaps."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MB chunks (weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def replace_dir(tmp: Path, target: Path, is_current: Callable[[Path], bool]) -> None:
    """Move the finished folder ``tmp`` to ``target``, discarding a stale ``target`` first.

    If another process finished an equivalent folder meanwhile (``is_current(target)``),
    its result is kept and ``tmp`` is left for the caller to delete.
    """
    if target.exists():
        if is_current(target):
            return
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
        try:
            target.rename(stale)
        except FileNotFoundError:
            pass
        else:
            shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.rename(target)
    except OSError:
        if not is_current(target):
            raise


@contextmanager
def atomic_file(path: Path, mode: int = 0o644) -> Iterator[str]:
    """A temporary file name next to ``path``: write it inside the block; on success it is renamed onto ``path``
    (readers never see a partial file), on failure removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
