"""Admission benchmark, open loop: pods arrive at a fixed rate whatever the latency, as they do
from the API server during a burst. Not part of the test suite; it prints figures.

    .venv/bin/python bench/bench.py [--rates 50,100,200,300,500] [--seconds 30] [--json]
    .venv/bin/python bench/bench.py --apiserver [--creates 200]

See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import pods  # noqa: E402
from identity.registry import load_registry_file  # noqa: E402
from tests.support.admission import apply_patch  # noqa: E402
from tests.support.cluster import WEBHOOK_CLIENT_NAME, generate_pki  # noqa: E402
from webhook.admission import parse_review  # noqa: E402
from webhook.admit import request_info  # noqa: E402
from webhook.decision import Decider  # noqa: E402
from webhook.opa_process import free_port  # noqa: E402
from webhook.policy import PolicyDecision  # noqa: E402
from webhook.settings import Settings  # noqa: E402
from webhook.tls import ensure_dev_certificates  # noqa: E402

BIN = REPO / ".tools" / "bin"
VEGETA = BIN / "vegeta"
# The chart's webhook.timeoutSeconds: past it the API server gives up on the call.
TIMEOUT = "3s"
# The API server's webhook client keeps this many idle connections per host (client-go's
# transport defaults); beyond them a burst opens (and closes) extra TLS connections.
IDLE_CONNECTIONS = 25
# The API server sends a pod's /validate only once its /mutate has answered; an open-loop
# generator cannot wait for answers, so it sends the /validate this long after the /mutate,
# well past a mutate's latency below saturation. Sent in the next slot instead, the /validate
# overtook its own /mutate whenever that took longer than one slot (2.5 ms at 200 pods/s): a
# pod validated before it was mutated, which no API server does (and a decision memo miss).
VALIDATE_LAG_SECONDS = 0.1
LABELS = {"webhook": "webhook", "floor": "FastAPI floor"}
DECISION_PATH = "/v1/data/kube_intent/admission/decision"
ALLOWED = re.compile(rb'"allowed":\s*true')
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- results -------------------------------------------------------------------------------


@dataclass
class Row:
    """One target at one rate: latency percentiles (ms) over every request, and the failures."""

    rate: int
    target: str
    requests: int
    per_s: int  # the rate asked of vegeta for this target
    sent_per_s: float  # the rate it achieved
    p50: float
    p90: float
    p99: float
    max: float
    non_2xx: int
    timeouts: int
    conn_errors: int
    denied: int
    cpu: dict[str, float] = field(default_factory=dict)
    # webhook runs: the OPA queries the webhook made per pod (1: /validate reused the decision
    # /mutate got; 2: it asked again), from its own metrics
    opa_queries_per_pod: float | None = None


def quantile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(rate: int, target: str, per_s: int, results: list[dict[str, Any]]) -> Row:
    latencies = sorted(r["latency"] / 1e6 for r in results)
    stamps = sorted(r["timestamp"] for r in results)
    span = (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    errors = Counter(classify(r) for r in results)
    return Row(
        rate=rate,
        target=target,
        requests=len(results),
        per_s=per_s,
        sent_per_s=(len(results) - 1) / span if span else 0.0,
        p50=quantile(latencies, 0.50),
        p90=quantile(latencies, 0.90),
        p99=quantile(latencies, 0.99),
        max=latencies[-1],
        non_2xx=errors["non-2xx"],
        timeouts=errors["timeout"],
        conn_errors=errors["connection"],
        denied=errors["denied"],
    )


def classify(result: dict[str, Any]) -> str:
    code, error = result["code"], result["error"]
    if code == 0:
        timed_out = "Timeout" in error or "deadline exceeded" in error or "i/o timeout" in error
        return "timeout" if timed_out else "connection"  # reset, EOF, refused...
    if not 200 <= code < 300:
        return "non-2xx"
    # The review's (or OPA's) answer: a pod the policy should allow was not.
    return "ok" if ALLOWED.search(base64.b64decode(result["body"] or "")) else "denied"


# -- vegeta --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path

    def vegeta_args(self) -> list[str]:
        return [f"-root-certs={self.ca}", f"-cert={self.client_cert}", f"-key={self.client_key}"]

    def httpx_verify(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def target(url: str, body: bytes) -> bytes:
    line = {
        "method": "POST",
        "url": url,
        "body": base64.b64encode(body).decode(),
        "header": {"Content-Type": ["application/json"]},
    }
    return json.dumps(line).encode() + b"\n"


def attack(
    work: Path, targets: Sequence[tuple[str, bytes]], extra: list[str]
) -> list[dict[str, Any]]:
    """Run vegeta over `targets` (url, body), round robin; its results, one dict each."""
    targets_file, results_file = work / "targets.json", work / "results.bin"
    with targets_file.open("wb") as out:
        for url, body in targets:
            out.write(target(url, body))
    argv = [str(VEGETA), "-cpus=1", "attack", "-format=json", f"-targets={targets_file}"]
    subprocess.run([*argv, f"-output={results_file}", *extra], check=True)
    encoded = subprocess.run(
        [str(VEGETA), "encode", "-to=json", str(results_file)],
        check=True,
        capture_output=True,
    ).stdout
    results = []
    for line in encoded.splitlines():
        result = json.loads(line)
        if result["error"] == "no targets to attack":  # the lazy reader's end of file
            continue
        result["timestamp"] = dt.datetime.fromisoformat(result["timestamp"]).timestamp()
        results.append(result)
    return results


# -- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every core, every process) so far."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@contextmanager
def cpu_meter(pids: dict[str, int], into: dict[str, float]) -> Iterator[None]:
    """CPU use (% of one core) of our processes, of the load generator and of everything else
    on the machine (other people's work: the noise in the figures), while the block runs."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    generator, machine, started = children_cpu(), busy_seconds(), time.monotonic()
    yield
    elapsed = time.monotonic() - started
    for name, pid in pids.items():
        into[name] = 100 * (cpu_seconds(pid) - before[name]) / elapsed
    into["vegeta"] = 100 * (children_cpu() - generator) / elapsed
    # The two clocks are sampled apart: never print a small negative.
    into["others"] = max(0.0, 100 * (busy_seconds() - machine) / elapsed - sum(into.values()))


def settle(pids: Sequence[int], idle_percent: float = 5.0, limit: float = 300.0) -> None:
    """Wait until the servers are idle, so that runs do not overlap: after an overload a server
    goes on working through requests whose callers gave up (and the audit writer flushes)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(0.5)
        if 100 * (sum(cpu_seconds(pid) for pid in pids) - before) / 0.5 < idle_percent:
            break
    waited = time.monotonic() - started
    if waited > 2:
        log(f"waited {waited:.0f} s for the servers to go idle")


@contextmanager
def process(argv: list[str], log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_file.open("ab") as out:
        child = subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def wait_ready(
    url: str, verify: ssl.SSLContext, child: subprocess.Popen[bytes], *, any_status: bool = False
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"{child.args!r} exited ({child.returncode}); see its log")
        try:
            status = httpx.get(url, verify=verify, timeout=2).status_code
            if any_status or status == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after 60 s")


def make_tls(work: Path) -> Tls:
    """The serving certificate (a dev CA) and an API-server-like client certificate (mTLS)."""
    serving = ensure_dev_certificates(work / "tls", ["127.0.0.1"])
    pki = generate_pki(work / "pki")
    return Tls(
        serving.ca_cert,
        serving.cert,
        serving.key,
        pki.webhook_client_ca,
        pki.webhook_client_cert,
        pki.webhook_client_key,
    )


def build_tools(*names: str) -> None:
    """The project's own pinned builds (cached after the first run), output to stderr."""
    subprocess.run([str(REPO / "scripts" / "tools.sh"), *names], check=True, stdout=sys.stderr)


# -- the pods ----------------------------------------------------------------------------------


@dataclass
class Pool:
    """Distinct pods: each one's /mutate review, its /validate review (the mutated pod) and
    the two inputs the webhook gives OPA for them."""

    mutate: list[bytes]
    validate: list[bytes]
    opa: list[bytes]  # mutate input, validate input, mutate input, ...


def build_pool(size: int, url: str, tls: Tls, work: Path) -> Pool:
    """Mutate every pod once through the server (outside any measurement) and apply its patch,
    as the API server does; then the validate review is the patched pod, named and with a uid."""
    log(f"warm-up: {size} distinct pods through /mutate (not measured) ...")
    originals = [pods.pod(i) for i in range(size)]
    reviews = [pods.review(p) for p in originals]
    bodies = [json.dumps(r).encode() for r in reviews]
    index = {r["request"]["uid"]: i for i, r in enumerate(reviews)}
    # Closed loop, four at a time, each pod once (the lazy reader stops at the end).
    results = attack(
        work,
        [(url + "/mutate", body) for body in bodies],
        [
            "-lazy",
            "-rate=0",
            "-max-workers=4",
            "-max-body=-1",
            f"-timeout={TIMEOUT}",
            *tls.vegeta_args(),
        ],
    )
    validate: list[bytes | None] = [None] * size
    for result in results:
        answer = json.loads(base64.b64decode(result["body"] or "") or "{}").get("response") or {}
        if result["code"] != 200 or not answer.get("allowed"):
            detail = result["error"] or answer.get("status") or result["code"]
            raise SystemExit(f"warm-up: the webhook did not allow a pod: {detail}")
        i = index[answer["uid"]]
        patch = json.loads(base64.b64decode(answer["patch"]))
        final = pods.created(apply_patch(originals[i], patch), seed=str(i))
        validate[i] = json.dumps(pods.review(final)).encode()
    missing = [i for i, body in enumerate(validate) if body is None]
    if missing:
        raise SystemExit(f"warm-up: {len(missing)} pods got no answer")
    final_bodies = [body for body in validate if body is not None]
    return Pool(bodies, final_bodies, opa_inputs(bodies, final_bodies))


def opa_inputs(mutate: list[bytes], validate: list[bytes]) -> list[bytes]:
    """The exact input the webhook sends OPA for each review: the project's own decision path
    (parse, detect, intent, identity), with an engine that records instead of asking."""

    class Recording:
        def __init__(self) -> None:
            self.seen: dict[str, Any] = {}

        async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
            self.seen = policy_input
            return PolicyDecision(allowed=True)

    registry = load_registry_file(REPO / "examples" / "agents.yaml")
    engine = Recording()
    decider = Decider(
        detector=Settings().accelerator_detector,
        registry=lambda: registry,
        policy=engine,  # type: ignore[arg-type]
        trust_domain="cluster.local",
        memo=False,  # both inputs, as a webhook without the decision memo would send them
        # The pod view the server sends OPA: it runs the bundled policies alone (webhook/app.py).
        lean_input=True,
    )

    async def one(body: bytes) -> bytes:
        request = parse_review(body)
        info = request_info(request, authenticated=True)
        pod = request.object or {}
        await decider.decide(info, pod, decider.detect(pod, info.namespace))
        return json.dumps({"input": engine.seen}).encode()

    async def every() -> list[bytes]:
        return [await one(body) for pair in zip(mutate, validate, strict=True) for body in pair]

    log(f"building {2 * len(mutate)} OPA inputs with webhook.decision.Decider ...")
    return asyncio.run(every())


# -- the runs --------------------------------------------------------------------------------


@dataclass
class Servers:
    webhook: str
    webhook_pid: int
    opa: str
    opa_pid: int
    floor: str
    floor_pid: int

    @property
    def pids(self) -> dict[str, int]:
        return {"webhook": self.webhook_pid, "opa": self.opa_pid, "floor": self.floor_pid}


def validate_lag(rate: int) -> int:
    """How many pods after its /mutate a pod's /validate is sent (VALIDATE_LAG_SECONDS)."""
    return max(1, round(rate * VALIDATE_LAG_SECONDS))


def run_rate(
    rate: int, seconds: int, pool: Pool, servers: Servers, tls: Tls, work: Path, only: list[str]
) -> list[Row]:
    """At `rate` pods/s: /mutate and /validate of each pod (2 x rate requests/s), then OPA with
    the same two inputs per pod, then the floor with the same two bodies per pod."""
    count = rate * seconds + rate  # vegeta may send one more; never reuse a pod in a run
    common = [
        f"-rate={2 * rate}/s",
        f"-duration={seconds}s",
        f"-timeout={TIMEOUT}",
        "-max-body=256",
        f"-connections={IDLE_CONNECTIONS}",
    ]

    lag = validate_lag(rate)

    def interleaved(base: str) -> list[tuple[str, bytes]]:
        # Pod i's /mutate, and in the same slot pair the /validate of the pod mutated `lag`
        # pairs before; the first `lag` validate slots go to pods past this run's, which the
        # warm-up mutated.
        return [
            pair
            for i in range(count)
            for pair in (
                (base + "/mutate", pool.mutate[i]),
                (base + "/validate", pool.validate[i - lag if i >= lag else count + i]),
            )
        ]

    runs = {
        "webhook": (interleaved(servers.webhook), tls.vegeta_args()),
        "opa": ([(servers.opa + DECISION_PATH, body) for body in pool.opa[: 2 * count]], []),
        "floor": (interleaved(servers.floor), tls.vegeta_args()),
    }
    rows = []
    for name in only:
        targets, extra = runs[name]
        settle(list(servers.pids.values()))
        log(f"{rate} pods/s for {seconds} s: {name} ...")
        cpu: dict[str, float] = {}
        queries_before = opa_queries(servers.webhook, tls) if name == "webhook" else 0.0
        with cpu_meter(servers.pids, cpu):
            results = attack(work, targets, [*common, *extra])
        queries = opa_queries(servers.webhook, tls) - queries_before if name == "webhook" else None
        if name == "opa":
            split = {"OPA direct (both inputs)": (2 * rate, results)}
        else:
            split = {
                f"{LABELS[name]} {path}": (rate, [r for r in results if r["url"].endswith(path)])
                for path in ("/mutate", "/validate")
            }
        for i, (label, (per_s, part)) in enumerate(split.items()):
            row = summarize(rate, label, per_s, part)
            row.cpu = cpu if i == 0 else {}
            if queries is not None and i == 0:
                row.opa_queries_per_pod = queries / (len(results) / 2)
            rows.append(row)
    return rows


OPA_QUERIES = re.compile(rb"^kube_intent_opa_evaluation_duration_seconds_count (\S+)$", re.M)


def opa_queries(webhook: str, tls: Tls) -> float:
    """The OPA queries the webhook has made so far (its /metrics)."""
    metrics = httpx.get(webhook + "/metrics", verify=tls.httpx_verify(), timeout=10).content
    found = OPA_QUERIES.search(metrics)
    return float(found.group(1)) if found else 0.0


COLUMNS = (
    "{rate:>6} {target:<26} {sent:>7} {p50:>7.1f} {p90:>7.1f} {p99:>7.1f} {max:>7.1f}"
    " {non_2xx:>6} {timeouts:>7} {conn_errors:>4} {denied:>6}  {cpu}"
)
HEADER = (
    f"{'pods/s':>6} {'target':<26} {'sent/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}"
    f" {'max ms':>7} {'non2xx':>6} {'timeout':>7} {'conn':>4} {'denied':>6}  CPU % of a core"
)


def table(rows: list[Row]) -> str:
    lines = [HEADER]
    for previous, row in zip([None, *rows], rows, strict=False):
        if previous is not None and previous.rate != row.rate:
            lines.append("")
        cpu = ", ".join(f"{name} {value:.0f}" for name, value in row.cpu.items())
        if row.opa_queries_per_pod is not None:
            cpu += f"; OPA queries/pod {row.opa_queries_per_pod:.2f}"
        sent = f"{row.sent_per_s:.0f}" + ("!" if lagging(row) else " ")
        lines.append(COLUMNS.format(**{**asdict(row), "cpu": cpu, "sent": sent}))
    if any(lagging(row) for row in rows):
        lines.append(
            "! vegeta sent below the rate asked (it shares the cores, and an overloaded server"
            " makes it open a TLS connection per request): the rate it did send is shown"
        )
    return "\n".join(lines)


def lagging(row: Row) -> bool:
    return row.sent_per_s < 0.97 * row.per_s


def start_servers(stack: ExitStack, work: Path, tls: Tls) -> Servers:
    """`kube-intent serve` as deployed (TLS, mutual TLS, signing keys, audit, its own
    supervised OPA, INFO decision logs) and the floor, both on loopback."""
    keys = work / "keys"
    subprocess.run(
        [sys.executable, "-m", "webhook", "keys", "generate", str(keys)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port, floor_port = free_port(), free_port()
    serve_log = work / "serve.log"
    serve = [
        *(sys.executable, "-m", "webhook", "serve", "--host=127.0.0.1", f"--port={port}"),
        f"--state-dir={work / 'state'}",
        f"--tls-cert={tls.cert}",
        f"--tls-key={tls.key}",
        f"--client-ca={tls.client_ca}",
        f"--client-cert-name={WEBHOOK_CLIENT_NAME}",
        f"--agents={REPO / 'examples' / 'agents.yaml'}",
        f"--keys-dir={keys}",
    ]
    floor = [
        *(sys.executable, str(REPO / "bench" / "floor.py"), f"--port={floor_port}"),
        *(f"--cert={tls.cert}", f"--key={tls.key}", f"--client-ca={tls.client_ca}"),
    ]
    server = stack.enter_context(process(serve, serve_log))
    bare = stack.enter_context(process(floor, work / "floor.log"))
    webhook_url, floor_url = f"https://127.0.0.1:{port}", f"https://127.0.0.1:{floor_port}"
    wait_ready(webhook_url + "/readyz", tls.httpx_verify(), server)
    # A GET gets 405: serving.
    wait_ready(floor_url + "/mutate", tls.httpx_verify(), bare, any_status=True)
    started = re.search(r"started OPA pid=(\d+) on (http://[\d.:]+)", serve_log.read_text())
    if started is None:
        raise SystemExit(f"no 'started OPA' line in {serve_log}")
    return Servers(
        webhook_url, server.pid, started.group(2), int(started.group(1)), floor_url, bare.pid
    )


def admission_bench(args: argparse.Namespace) -> None:
    build_tools("opa", "vegeta")
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="kube-intent-bench-"))
        if not args.keep:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        log(f"work directory {work}{' (kept)' if args.keep else ''}")
        tls = make_tls(work)
        servers = start_servers(stack, work, tls)
        highest = max(args.rates)
        size = highest * (args.seconds + 1) + validate_lag(highest)
        pool = build_pool(size, servers.webhook, tls, work)
        rows: list[Row] = []
        for rate in args.rates:
            rows += run_rate(rate, args.seconds, pool, servers, tls, work, args.only)
        notes = {name: log_summary(work / f"{name}.log") for name in ("serve", "floor")}
    if args.json:
        document = {"mode": "admission", "seconds": args.seconds, "rows": [asdict(r) for r in rows]}
        print(json.dumps({**document, "server_logs": notes}, indent=2))
        return
    print(
        f"# open loop, {args.seconds} s per rate, {os.cpu_count()} cores. Each pod: one /mutate and"
        " one /validate request (2 x rate req/s).\n# Latency over every request, timeouts"
        f" included; timeout {TIMEOUT} (the chart's webhook.timeoutSeconds)."
    )
    print(table(rows))
    for name, messages in notes.items():
        if messages:
            print(f"\n# {name}.log, warnings and errors (count, message):")
            for message, count in messages.items():
                print(f"#   {count:6}  {message}")


def log_summary(log_file: Path) -> dict[str, int]:
    """Warnings and errors in a server's log, by message: JSON lines (kube-intent serve) and
    the last line of Python tracebacks (the floor logs plainly)."""
    counts: Counter[str] = Counter()
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if re.match(r"[\w.]+(Error|Exception|Disconnect)\b", line):
                counts[line[:120]] += 1
            continue
        if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
            counts[str(entry.get("msg"))[:120]] += 1
    return dict(counts.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=[50, 100, 200, 300, 500],
        help="pods per second, comma separated [default: 50,100,200,300,500]",
    )
    parser.add_argument("--seconds", type=int, default=30, help="per rate [default: 30]")
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=["webhook", "opa", "floor"],
        help="what to measure, of webhook,opa,floor [default: all three]",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--apiserver",
        action="store_true",
        help="measure pod CREATE latency through a real kube-apiserver instead",
    )
    parser.add_argument(
        "--creates", type=int, default=200, help="--apiserver: CREATEs per case [default: 200]"
    )
    args = parser.parse_args()
    if args.apiserver:
        from bench.apiserver import apiserver_bench

        apiserver_bench(args)
    else:
        admission_bench(args)


if __name__ == "__main__":
    main()
