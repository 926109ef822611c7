"""SQLite audit appends at a fixed rate, alone and beside a busy event loop. Prints figures.

`/validate` answers only once its audit row is committed. The commit runs in the store's writer
thread, which gives the GIL up around every SQLite call and must win it back from the event loop
each time; this measures what that costs as the loop gets busier (the webhook's loop is busy
about 60% of the time at 100 pods/s on the development machine).

    .venv/bin/python bench/audit_append.py [--rate 100] [--seconds 10] [--busy 0,1,2,4]

`--busy B`: besides the appends, the loop runs Python for B ms, then idles 2 ms, in a cycle.
Each append is a realistic row (a defaulted Deployment pod from bench/pods.py as its input),
written to a fresh database in a temporary directory of the current working directory's disk.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import pods
from bench.bench import quantile
from tests.support.audit import full_record
from webhook.audit.sqlite import SQLiteStore

IDLE_MS = 2.0


async def keep_busy(busy_ms: float) -> None:
    """Hold the GIL for `busy_ms` of Python, then let the loop idle IDLE_MS; forever."""
    while True:
        until = time.perf_counter() + busy_ms / 1000
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(IDLE_MS / 1000)


async def appends(rate: float, seconds: float, busy_ms: float) -> list[float]:
    """Latency (ms) of each append at `rate` per second for `seconds`."""
    with tempfile.TemporaryDirectory(dir=".") as work:
        store = await SQLiteStore.open(str(Path(work) / "audit.db"))
        record = full_record(input={"pod": pods.created(pods.pod(1), seed="1")})
        latencies: list[float] = []

        async def one() -> None:
            started = time.perf_counter()
            await store.append_many([record])
            latencies.append((time.perf_counter() - started) * 1000)

        busy = asyncio.create_task(keep_busy(busy_ms)) if busy_ms else None
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        if busy is not None:
            busy.cancel()
        await store.close()
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100, help="appends/s [default: 100]")
    parser.add_argument("--seconds", type=float, default=10, help="per case [default: 10]")
    parser.add_argument(
        "--busy",
        type=lambda text: [float(b) for b in text.split(",")],
        default=[0, 1, 2, 4],
        help=f"ms of Python per cycle of the loop (then {IDLE_MS:g} ms idle) [default: 0,1,2,4]",
    )
    args = parser.parse_args()
    print(f"# {args.rate:g} appends/s for {args.seconds:g} s per case; latency in ms")
    print(f"{'loop busy':<22} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}")
    for busy_ms in args.busy:
        latencies = uvloop.run(appends(args.rate, args.seconds, busy_ms))
        case = f"{busy_ms:g} ms of {busy_ms + IDLE_MS:g}" if busy_ms else "idle"
        p50, p90, p99 = (quantile(latencies, q) for q in (0.5, 0.9, 0.99))
        print(f"{case:<22} {p50:7.2f} {p90:7.2f} {p99:7.2f} {latencies[-1]:7.2f}")


if __name__ == "__main__":
    main()
