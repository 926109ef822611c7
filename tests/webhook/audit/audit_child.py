"""Audit writer process for the multi-process tests (run as a script, not collected).

    python audit_child.py DB [--count N] [--concurrency C] [--label L] [--start-at EPOCH]
                            [--pause SECONDS]

Appends records with C concurrent writers and prints ``ack <id> <seq>`` after each append has
returned, i.e. once the store has acknowledged the row as durably committed. ``--count 0`` runs
until killed. Prints ``done`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

from webhook.audit import AcceleratorSummary, AuditRecord, open_store
from webhook.violations import Violation

# A realistically sized policy input (a pod spec), so that transactions carry some weight.
_POD = {
    "metadata": {"name": "llm", "labels": {f"label-{i}": "x" * 40 for i in range(20)}},
    "spec": {
        "containers": [
            {
                "name": f"c{i}",
                "image": "nvcr.io/nim/llama:1.0",
                "env": [{"name": f"E{j}", "value": "v" * 30} for j in range(10)],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }
            for i in range(4)
        ]
    },
}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--label", default="child")
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch time to start writing")
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds between a writer's appends"
    )
    args = parser.parse_args()

    store = await open_store(args.db)
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    numbers = itertools.count()

    async def writer() -> None:
        while True:
            n = next(numbers)
            if args.count and n >= args.count:
                return
            record = AuditRecord(
                namespace=args.label,
                name=f"{args.label}-{n}",
                agent="load",
                allowed=n % 2 == 0,
                violations=[] if n % 2 == 0 else [Violation(rule="load", message="odd")],
                accelerators=AcceleratorSummary(total=1, resources={"nvidia.com/gpu": 1}),
                input={"pod": _POD, "n": n},
            )
            stored = await store.append(record)
            print(f"ack {stored.id} {stored.seq}", flush=True)
            if args.pause:
                await asyncio.sleep(args.pause)

    await asyncio.gather(*(writer() for _ in range(args.concurrency)))
    await store.close()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
