"""Memory of a live `kube-intent serve --dev` under hostile load. Not part of the test suite.

    .venv/bin/python bench/hostile_rss.py [--per-phase 1100] [--concurrency 8]

Starts the server (its own OPA, SQLite audit in a temporary state directory), then sends
phase after phase of hostile AdmissionReviews over HTTPS and prints the server's resident
memory (VmRSS) and peak (VmHWM) after each phase, with the answers it got. The first
campaign's worst case was the first phase: 1,100 distinct 1 MB intents took RSS to 1.08 GB
(the parse cache kept every one). The numbers are the result, not an assertion: memory
depends on the allocator and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from identity.intent import INTENT_ANNOTATION  # noqa: E402
from tests.support.admission import review  # noqa: E402
from tests.support.manifests import example_pod  # noqa: E402
from tests.support.paths import EXAMPLES  # noqa: E402
from webhook.opa_process import free_port  # noqa: E402

VALID_INTENT = {
    "purpose": "inference",
    "models": ["meta-llama/Llama-3.1-8B-Instruct"],
    "dataClasses": ["internal"],
    "accelerators": {"count": 1, "resource": "nvidia.com/gpu"},
    "ttl": "15m",
}


def with_intent(text: str) -> bytes:
    pod = example_pod("allowed-vllm-llama")
    pod["metadata"]["annotations"][INTENT_ANNOTATION] = text
    return json.dumps(review(pod)).encode()


def huge_intent(i: int) -> bytes:
    return with_intent(f"{i}:" + "x" * (1024 * 1024))


def big_valid_intent(i: int) -> bytes:
    document = {
        **VALID_INTENT,
        "tools": [f"tool-{i}-{j}-" + "t" * 100 for j in range(256)],
        "egress": [f"h{i}-{j}.example.com" for j in range(256)],
    }
    return with_intent(json.dumps(document))


def deep_json(i: int) -> bytes:
    return b'{"a":' * (900 + i % 100) + b"1" + b"}" * (900 + i % 100)


def many_claims(i: int) -> bytes:
    pod = example_pod("allowed-vllm-llama")
    pod["spec"]["resourceClaims"] = [
        {"name": f"c{j}", "resourceClaimName": f"c{i}-{j}"} for j in range(5000)
    ]
    return json.dumps(review(pod)).encode()


def junk_3mb(i: int) -> bytes:
    pod = example_pod("allowed-vllm-llama")
    pod["spec"]["junk"] = [{"a": i % 10}] * 350_000  # 2.8 MB: under the 3 MiB body limit
    return json.dumps(review(pod), separators=(",", ":")).encode()


def hostile_numbers(i: int) -> bytes:
    body = json.dumps(review(example_pod("allowed-vllm-llama"))).encode()
    splice = [b"1" * 4301, b"NaN", b"1e309", b'"\\ud800"'][i % 4]
    return body.replace(b'"CREATE"', b'"CREATE", "x": ' + splice)


PHASES: dict[str, Callable[[int], bytes]] = {
    "distinct 1 MB intents": huge_intent,
    "distinct valid 60 KB intents": big_valid_intent,
    "JSON ~1,000 deep": deep_json,
    "4301 digits, NaN, 1e309, surrogates": hostile_numbers,
    "5,000 resource claims": many_claims,
    "3 MB of small objects": junk_3mb,
}


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) // 1024
    return fields


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def start_server(state: Path, port: int, log_file: Path) -> subprocess.Popen[bytes]:
    argv = [
        str(REPO / ".venv" / "bin" / "kube-intent"),
        "serve",
        "--dev",
        "--state-dir",
        str(state),
        "--port",
        str(port),
        "--agents",
        str(EXAMPLES / "agents.yaml"),
        "--log-level",
        "WARNING",
    ]
    pinned = REPO / ".tools" / "bin" / "opa"  # scripts/tools.sh opa
    if pinned.exists():
        argv += ["--opa-bin", str(pinned)]
    with log_file.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def wait_ready(url: str, context: ssl.SSLContext, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"kube-intent serve exited with {child.returncode}")
        try:
            if httpx.get(f"{url}/readyz", verify=context, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("kube-intent serve did not become ready")


async def phase(
    url: str, context: ssl.SSLContext, make: Callable[[int], bytes], count: int, workers: int
) -> collections.Counter[str]:
    outcomes: collections.Counter[str] = collections.Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            path = "/mutate" if i % 2 else "/validate"
            answer = await client.post(path, content=make(i))
            outcome = str(answer.status_code)
            if answer.status_code == 200:
                response = answer.json()["response"]
                outcome += " allowed" if response["allowed"] else f" {response['status']['code']}"
            outcomes[outcome] += 1

    async with httpx.AsyncClient(base_url=url, verify=context, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(workers)))
    return outcomes


@contextlib.contextmanager
def server(work: Path) -> Iterator[tuple[str, ssl.SSLContext, subprocess.Popen[bytes]]]:
    port = free_port()
    child = start_server(work / "state", port, work / "serve.log")
    try:
        url = f"https://127.0.0.1:{port}"
        ca = work / "state" / "tls" / "ca.crt"
        deadline = time.monotonic() + 60
        while not ca.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        context = ssl.create_default_context(cafile=str(ca))
        wait_ready(url, context, child)
        yield url, context, child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-phase", type=int, default=1100)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kube-intent-rss-"))
    with server(work) as (url, context, child):
        opa = children(child.pid)
        start = memory(child.pid)
        print(f"{'phase':40} {'RSS MiB':>8} {'peak MiB':>9} {'OPA RSS':>8}  answers")
        print(f"{'(ready)':40} {start['VmRSS']:>8} {start['VmHWM']:>9} {'':>8}")
        for name, make in PHASES.items():
            began = time.monotonic()
            outcomes = asyncio.run(phase(url, context, make, args.per_phase, args.concurrency))
            now = memory(child.pid)
            opa_rss = sum(
                memory(pid).get("VmRSS", 0) for pid in opa if Path(f"/proc/{pid}").exists()
            )
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
            print(
                f"{name:40} {now['VmRSS']:>8} {now['VmHWM']:>9} {opa_rss:>8}  {answers} "
                f"({time.monotonic() - began:.0f} s)",
                flush=True,
            )
    errors = [
        line
        for line in (work / "serve.log").read_text(errors="replace").splitlines()
        if '"level":"error"' in line and "admission" not in line
    ]
    print(f"\nserver log: {work / 'serve.log'} ({len(errors)} unexpected error lines)")
    for line in errors[:5]:
        print("  " + line[:300])


if __name__ == "__main__":
    main()
