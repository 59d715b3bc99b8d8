"""Approximate bytes held by Python objects, for the per-component memory breakdown
(runtime/memory.py): components answer `memory_bytes()` with this, so the figures come from
the buffers themselves rather than from guesses.

    approx_bytes(obj, seen)  bytes of obj and what it references (numpy data, bytes, containers,
                             dataclasses, named tuples, objects with __dict__ / __slots__),
                             each object counted once per `seen` set: pass the same set for
                             the parts of one camera, and a frame shared by its capture slot
                             and its clip ring is counted where it is met first.

Numpy views count their base array's data once (a view of a counted array adds only its
header). Threads, locks, sockets, modules, classes and functions count 0: the breakdown is
about data, not machinery. Depth is bounded (`max_depth`), so a cycle or a huge graph cannot
make a scrape slow.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
import types
from collections import deque
from typing import Any

import numpy as np

__all__ = ["approx_bytes", "array_bytes"]

_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
         threading.Thread, type(threading.Lock()), type(threading.RLock()), threading.Condition,
         threading.Event)
_ATOMS = (int, float, bool, complex, str, type(None))
_ARRAY_HEADER = 112  # sys.getsizeof of an ndarray without its data


def array_bytes(a: np.ndarray | None, seen: set[int] | None = None) -> int:
    """Data bytes of a numpy array (its base's, once per `seen`), 0 for None."""
    if a is None:
        return 0
    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    if seen is not None:
        if id(base) in seen:
            return 0
        seen.add(id(base))
    return int(base.nbytes if base.flags.owndata or base.base is None else a.nbytes)


def approx_bytes(obj: Any, seen: set[int] | None = None, max_depth: int = 6) -> int:
    """Bytes held by `obj` and what it references (see the module docstring)."""
    return _size(obj, set() if seen is None else seen, max_depth)


def _size(obj: Any, seen: set[int], depth: int) -> int:
    if obj is None or isinstance(obj, _SKIP):
        return 0
    oid = id(obj)
    if isinstance(obj, np.ndarray):  # data once per base (array_bytes), plus the header once
        if not isinstance(obj.base, np.ndarray):
            data = array_bytes(obj, seen)  # marks id(obj): it is its own base
            return data + _ARRAY_HEADER if data else 0
        if oid in seen:
            return 0
        seen.add(oid)
        return array_bytes(obj, seen) + _ARRAY_HEADER
    if oid in seen:
        return 0
    seen.add(oid)
    if isinstance(obj, _ATOMS) or isinstance(obj, (bytes, bytearray, memoryview)):
        return sys.getsizeof(obj)
    total = sys.getsizeof(obj, 64)
    if depth <= 0:
        return total
    d = depth - 1
    if isinstance(obj, dict) or isinstance(obj, types.MappingProxyType):
        for k, v in obj.items():
            total += _size(k, seen, d) + _size(v, seen, d)
        return total
    if isinstance(obj, (list, tuple, set, frozenset, deque)):
        for v in list(obj):
            total += _size(v, seen, d)
        return total
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            total += _size(getattr(obj, f.name, None), seen, d)
        return total
    slots = getattr(type(obj), "__slots__", ())
    for name in (slots,) if isinstance(slots, str) else slots:
        total += _size(getattr(obj, name, None), seen, d)
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        total += sys.getsizeof(attrs)
        for v in list(attrs.values()):
            total += _size(v, seen, d)
    return total
