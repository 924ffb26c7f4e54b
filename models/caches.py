"""A small thread-safe LRU map: the one cache class behind taxonomy prototypes and dashboard facts; and
:func:`release_heap`, which hands freed heap back to the system."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``size`` entries; reading an entry makes it the most recent; safe across threads."""

    def __init__(self, size: int = 16) -> None:
        if size < 1:
            raise ValueError("an LRU cache needs room for at least one entry")
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def release_heap() -> None:
    """Collect garbage and hand the freed heap back to the system (glibc keeps freed memory for reuse otherwise, so
    RSS would stay at its high-water mark after a batch, a tokenizer released, a JSON file parsed)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the allocator keeps it for reuse
        ctypes.CDLL("libc.so.6").malloc_trim(0)
