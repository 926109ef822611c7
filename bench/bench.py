"""Admission benchmark: /mutate and /validate through the real server and a real OPA, plus the
same decision asked of OPA directly (the floor). Not part of the test suite.

    .venv/bin/python bench/bench.py [--concurrency 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from identity.registry import load_registry_file  # noqa: E402
from tests.conftest import example_pod, review  # noqa: E402
from webhook.decision import Decider  # noqa: E402
from webhook.detect import AcceleratorDetector  # noqa: E402
from webhook.opa_process import OpaProcess, find_opa, free_port  # noqa: E402
from webhook.policy import OpaPolicyEngine  # noqa: E402
from webhook.review import pods_in  # noqa: E402
from webhook.settings import BUNDLED_POLICIES  # noqa: E402

Request = Callable[[], Awaitable[httpx.Response]]
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(name: str, url: str, body: bytes, concurrency: int, seconds: float) -> None:
    """wrk (C, epoll) as the load generator: the Python client would compete for the 2 cores."""
    with tempfile.TemporaryDirectory() as tmp:
        script, payload = Path(tmp) / "post.lua", Path(tmp) / "body.json"
        script.write_text(WRK_SCRIPT)
        payload.write_bytes(body)
        out = subprocess.run(
            [
                "wrk",
                "--latency",
                "-t",
                "1",
                "-c",
                str(concurrency),
                "-d",
                f"{seconds:.0f}s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "BENCH_BODY": str(payload)},
        ).stdout
    quantiles = {
        m.group(1): float(m.group(2)) * _UNITS[m.group(3)]
        for m in re.finditer(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)$", out, re.MULTILINE)
    }
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    print(
        f"{name:<22} {rps:>8.0f} req/s   p50 {quantiles['50']:6.2f} ms   "
        f"p90 {quantiles['90']:6.2f} ms   p99 {quantiles['99']:6.2f} ms   "
        f"errors {errors.group(1) if errors else 0}"
    )


async def drive(name: str, send: Request, concurrency: int, seconds: float) -> None:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await send()
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors += 1

    for _ in range(20):  # warm up connections and OPA's caches
        await send()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<22} {len(latencies) / elapsed:>8.0f} req/s   p50 {q[49] * 1000:6.2f} ms   "
        f"p90 {q[89] * 1000:6.2f} ms   p99 {q[98] * 1000:6.2f} ms   errors {errors}"
    )


async def policy_input(opa: OpaPolicyEngine, pod: dict[str, Any]) -> dict[str, Any]:
    """The exact input the webhook sends OPA for this pod."""
    registry = load_registry_file(REPO / "examples" / "agents.yaml")
    decider = Decider(
        detector=AcceleratorDetector(),
        registry=lambda: registry,
        policy=opa,
        trust_domain="cluster.local",
    )
    [item] = list(pods_in("bench", pod, "default"))
    verdict = await decider.decide(item.request, pod, decider.detect(pod, item.namespace))
    assert verdict.policy_input is not None
    assert verdict.allowed
    return verdict.policy_input


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--driver", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    args = parser.parse_args()

    opa = OpaProcess(find_opa(), BUNDLED_POLICIES)
    await opa.start()
    state = Path(tempfile.mkdtemp(prefix="kube-intent-bench-"))
    port = free_port()
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--dev",
            "--port",
            str(port),
            "--state-dir",
            str(state),
            "--agents",
            str(REPO / "examples" / "agents.yaml"),
            "--opa-url",
            opa.url,
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine = OpaPolicyEngine(opa.url)
    try:
        ca = state / "tls" / "ca.crt"
        for _ in range(300):
            if ca.exists():
                break
            await asyncio.sleep(0.1)
        verify = ssl.create_default_context(cafile=str(ca))
        limits = httpx.Limits(max_connections=args.concurrency)
        async with (
            httpx.AsyncClient(
                base_url=f"https://127.0.0.1:{port}", verify=verify, limits=limits
            ) as client,
            httpx.AsyncClient(base_url=opa.url, limits=limits) as direct,
        ):
            for _ in range(300):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            pod = example_pod("allowed-vllm-llama")
            body = review(pod)
            opa_body = {"input": await policy_input(engine, pod)}
            print(
                f"# {os.cpu_count()} cores, {args.driver}, concurrency {args.concurrency}, "
                f"{args.seconds:.0f} s each, examples/pods/allowed-vllm-llama.yaml"
            )
            if args.driver == "wrk":
                webhook_url = f"https://127.0.0.1:{port}"
                review_bytes = json.dumps(body).encode()
                for path in ("/mutate", "/validate"):
                    run_wrk(
                        f"webhook {path}",
                        webhook_url + path,
                        review_bytes,
                        args.concurrency,
                        args.seconds,
                    )
                run_wrk(
                    "OPA direct (floor)",
                    f"{opa.url}/v1/data/kube_intent/admission/decision",
                    json.dumps(opa_body).encode(),
                    args.concurrency,
                    args.seconds,
                )
                return
            await drive(
                "webhook /mutate",
                lambda: client.post("/mutate", json=body),
                args.concurrency,
                args.seconds,
            )
            await drive(
                "webhook /validate",
                lambda: client.post("/validate", json=body),
                args.concurrency,
                args.seconds,
            )
            await drive(
                "OPA direct (floor)",
                lambda: direct.post("/v1/data/kube_intent/admission/decision", json=opa_body),
                args.concurrency,
                args.seconds,
            )
    finally:
        await engine.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        await opa.stop()


if __name__ == "__main__":
    asyncio.run(main())
