"""Subprocess helper for test_store_kill9: writes events to an EventStore forever and prints
each acknowledged (committed) id on its own line, flushed, until it is killed.

Usage: python tests/integration/store_writer.py DB SNAPSHOTS_DIR SEED

Events carry ids numbered on from max_id() (as the bus does after a restart); they are
submitted in bursts of 1..64 from this thread and awaited, so kills land inside group
commits of varied sizes. Every 5th event has a snapshot whose bytes derive from its id.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.types import Event, EventKind  # noqa: E402
from events.store import EventStore  # noqa: E402


def snapshot_for(event_id: int) -> bytes:
    return b"\xff\xd8" + str(event_id).encode() * 50 + b"\xff\xd9"


def main() -> None:
    db, snaps, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    store = EventStore(db, snapshots_dir=snaps, batch_ms=5, max_batch=32)
    next_id = store.max_id() + 1
    out = sys.stdout
    while True:
        burst = []
        for _ in range(rng.randint(1, 64)):
            e = Event(EventKind.LINE_CROSSED, f"cam{next_id % 3}", track_id=next_id,
                      data={"line": "door", "direction": "in", "pad": "x" * rng.randint(0, 400)},
                      id=next_id)
            snap = snapshot_for(next_id) if next_id % 5 == 0 else None
            burst.append(store.submit(e, snap))
            next_id += 1
        for f in burst:
            out.write(f"{f.result(timeout=30)}\n")
            out.flush()


if __name__ == "__main__":
    main()
