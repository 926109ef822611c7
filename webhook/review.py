"""`kube-intent review`: the admission decision for manifests on disk, in CI and GitOps repos.

Reading (files, directories, stdin) and reporting live here; which pods a manifest makes is
``webhook/workloads.py``; the decision is the webhook's own (``webhook/decision.py``).

Exit status: 0 every pod allowed, 1 any pod denied, 2 bad input (a file that cannot be read or
parsed, a document that is not an object). Bad input does not stop the run: every other file
is still reviewed and reported, and the status is 2 at the end.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click
import yaml

from identity.manifests import objects
from webhook.decision import Decider, Verdict
from webhook.detect import CLAIM_KINDS as CLAIM_SOURCES
from webhook.detect import AcceleratorDetector, DetectError, StaticClaimResolver, Workload
from webhook.limits import pod_limits
from webhook.violations import Violation
from webhook.workloads import (
    Expansion,
    PodUnderReview,
    Skipped,
    device_class_names,
    expand,
)

DEFAULT_NAMESPACE = "default"
STDIN = "-"
STDIN_SOURCE = "<stdin>"
# What `kubectl apply -f DIR -R` reads.
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

# The API server takes objects of at most 1.5 MiB of JSON; a million values is far beyond that,
# and so is a 64 MiB file (a whole cluster's `kubectl get all -A -o yaml` fits).
MAX_EXPANDED_NODES = 1_000_000
MAX_INPUT_BYTES = 64 * 1024 * 1024

EXIT_ALLOWED = 0
EXIT_DENIED = 1
EXIT_BAD_INPUT = 2

ERR_READ = "cannot read: {detail}"
ERR_NOT_FOUND = "no such file or directory"
ERR_NOT_UTF8 = "not UTF-8 text: save the manifest as UTF-8"
ERR_TOO_BIG = f"larger than {MAX_INPUT_BYTES // 2**20} MiB: not a manifest"
ERR_EMPTY_DIR = "no .yaml, .yml or .json files in this directory"
ERR_TOO_LARGE = (
    "more than {limit} values once YAML aliases are expanded: not a Kubernetes manifest"
).format(limit=f"{MAX_EXPANDED_NODES:,}")
ERR_NOT_JSON = "holds a {what}, which JSON (and so the API server) cannot represent: quote it"
ERR_TOO_DEEP = "nested too deeply to read: not a Kubernetes manifest"
ERR_UNRESOLVED_CLAIM = (
    "claim {name} could not be resolved (not in the input): pass it with -f "
    "(its {kind} {object_name!r}); it is counted as 1 device until then"
)

COLOR_CHOICES = ("auto", "always", "never")


@dataclass(frozen=True, slots=True)
class InputError:
    """A file or document that could not be reviewed. ``source`` is ``file[:line:col]`` or
    ``file#N`` (the N-th document)."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "message": self.message}


@dataclass(slots=True)
class ReviewResult:
    source: str
    kind: str
    name: str
    namespace: str
    gpu: bool
    accelerators: int
    allowed: bool
    detected: list[str] = field(default_factory=list)
    violations: list[dict[str, str]] = field(default_factory=list)
    # The policies' warn-level messages (as the webhook's HTTP Warning headers carry them).
    warnings: list[str] = field(default_factory=list)
    # What review itself noticed: where its prediction of the pod may differ from the real one.
    notes: list[str] = field(default_factory=list)
    unresolved_claims: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "gpu": self.gpu,
            "accelerators": self.accelerators,
            "detected": self.detected,
            "allowed": self.allowed,
            "violations": self.violations,
            "warnings": self.warnings,
            "notes": self.notes,
            "unresolvedClaims": self.unresolved_claims,
        }


@dataclass(slots=True)
class ReviewReport:
    """Everything one run found: verdicts (denials first), skipped documents, bad input."""

    results: list[ReviewResult] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)

    @property
    def denied(self) -> int:
        return sum(not r.allowed for r in self.results)

    @property
    def exit_code(self) -> int:
        # Bad input wins: the verdicts of a partly read repository are not the whole story.
        if self.errors:
            return EXIT_BAD_INPUT
        return EXIT_DENIED if self.denied else EXIT_ALLOWED

    def summary(self) -> str:
        parts = [
            f"{self.denied} denied",
            f"{len(self.results) - self.denied} allowed",
            f"{len(self.skipped)} skipped",
        ]
        if self.errors:
            parts.append(f"{len(self.errors)} unreadable")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": {
                "denied": self.denied,
                "allowed": len(self.results) - self.denied,
                "skipped": len(self.skipped),
                "errors": len(self.errors),
                "exitCode": self.exit_code,
            },
            "results": [r.to_json() for r in self.results],
            "skipped": [s.to_json() for s in self.skipped],
            "errors": [e.to_json() for e in self.errors],
        }


# -- reading --------------------------------------------------------------------------------------


def manifest_paths(arguments: Sequence[str]) -> Iterator[tuple[str, Path | None]]:
    """(argument or file, path) for every input: ``-`` is stdin (path None), a directory is
    walked recursively for manifests in sorted order (deterministic, like ``kubectl -R``)."""
    for argument in arguments:
        if argument == STDIN:
            yield STDIN_SOURCE, None
            continue
        path = Path(argument)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file()
            )
            if not found:
                yield argument, path  # read_documents reports the empty directory
            for p in found:
                yield str(p), p
        else:
            yield argument, path


def read_documents(
    arguments: Sequence[str], stdin: TextIO
) -> tuple[list[tuple[str, Any]], list[InputError]]:
    """(source, document) of every document of every input, and what could not be read.

    A file with a syntax error contributes none of its documents (a half-read file could miss
    the claim template a pod needs), and the error names file:line:column.
    """
    documents: list[tuple[str, Any]] = []
    errors: list[InputError] = []
    for source, path in manifest_paths(arguments):
        if path is not None and path.is_dir():
            errors.append(InputError(source, ERR_EMPTY_DIR))
            continue
        try:
            text = _read(stdin if path is None else path)
        except FileNotFoundError:
            errors.append(InputError(source, ERR_NOT_FOUND))
            continue
        except UnicodeDecodeError:
            errors.append(InputError(source, ERR_NOT_UTF8))
            continue
        except OSError as exc:
            errors.append(InputError(source, ERR_READ.format(detail=exc.strerror or exc)))
            continue
        if text is None:
            errors.append(InputError(source, ERR_TOO_BIG))
            continue
        parsed = parse_documents(source, text)
        if isinstance(parsed, InputError):
            errors.append(parsed)
        else:
            documents.extend((f"{source}{position}", doc) for position, doc in objects(parsed))
    return documents, errors


def _read(source: TextIO | Path) -> str | None:
    """The text, or None past MAX_INPUT_BYTES (a device, a dump: not a manifest)."""
    if isinstance(source, Path):
        with source.open("rb") as fh:
            data = fh.read(MAX_INPUT_BYTES + 1)
        return None if len(data) > MAX_INPUT_BYTES else data.decode("utf-8")
    text = source.read(MAX_INPUT_BYTES + 1)
    return None if len(text) > MAX_INPUT_BYTES else text


def parse_documents(source: str, text: str) -> list[Any] | InputError:
    """Every YAML (or JSON) document of a text, or where it stops parsing (file:line:col)."""
    try:
        documents = list(yaml.load_all(text, Loader=_ManifestLoader))
    except RecursionError:
        return InputError(source, ERR_TOO_DEEP)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        return InputError(where, f"YAML syntax error: {what}")
    except yaml.YAMLError as exc:
        return InputError(source, f"YAML error: {str(exc).replace(chr(10), ' ')}")
    for index, document in enumerate(d for d in documents if d is not None):
        problem = _json_problem(document, MAX_EXPANDED_NODES)
        if problem:
            return InputError(f"{source}#{index}", problem)
    return documents


def _json_problem(document: Any, limit: int) -> str | None:
    """Why a document is not plain JSON data of a sane size, or None.

    Aliases are shared, not copied, by the parser: a dozen lines can stand for billions of
    nodes, which every later step (detection, JSON for OPA) would walk. Tags such as !!binary
    and !!set, and non-string keys, have no JSON form: the API server would refuse them too.
    """
    stack = [document]
    while stack:
        limit -= 1
        if limit < 0:
            return ERR_TOO_LARGE
        node = stack.pop()
        if isinstance(node, dict):
            bad_key = next((k for k in node if not isinstance(k, str)), None)
            if bad_key is not None:
                return ERR_NOT_JSON.format(what=f"key {bad_key!r}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif node is not None and not isinstance(node, str | int | float):
            return ERR_NOT_JSON.format(what=f"{type(node).__name__} value {str(node)[:40]!r}")
    return None


class _ManifestLoader(yaml.SafeLoader):
    """YAML as kubectl reads it: an unquoted 2024-01-01 is a string (JSON has no dates)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


# -- deciding -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Prepared:
    """The input, read and expanded, and the detector that knows its DeviceClasses."""

    expansion: Expansion
    detector: AcceleratorDetector
    errors: list[InputError]
    skipped: list[Skipped]


def prepare(
    arguments: Sequence[str],
    detector: AcceleratorDetector,
    *,
    stdin: TextIO,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> Prepared:
    """Read every input and predict its pods; no policy engine needed yet."""
    documents, errors = read_documents(arguments, stdin)
    expansion = expand(documents, default_namespace)
    errors += [InputError(source, message) for source, message in expansion.errors]
    resources, classes, device_classes = device_class_names(expansion.device_classes, detector)
    if resources or classes:
        detector = detector.extended(resource_patterns=resources, device_classes=classes)
    skipped = [*expansion.skipped, *device_classes]
    return Prepared(expansion, detector, errors, skipped)


def _detected(workload: Workload) -> list[str]:
    return [f"{a.container}: {a.resource}={a.count}" for a in workload.accelerators] + [
        f"claim {c.name}: {'|'.join(c.device_classes) or 'unresolved'}={c.count}"
        for c in workload.claims
        if c.accelerator
    ]


async def decide_all(
    prepared: Prepared, decider: Decider, default_namespace: str = DEFAULT_NAMESPACE
) -> ReviewReport:
    """Decide every predicted pod with ``decider`` (built with ``prepared.detector``)."""
    resolver = StaticClaimResolver(prepared.expansion.claims, default_namespace=default_namespace)
    results = []
    for item in prepared.expansion.pods:
        result = ReviewResult(
            item.source, item.kind, item.name, item.namespace, False, 0, True,
            notes=list(item.notes),
        )  # fmt: skip
        results.append(result)
        # The webhook's own limits first, as at admission: a pathological pod is refused for
        # what it is.
        excess = pod_limits(item.pod)
        verdict = (
            Verdict.refused(*excess) if excess else await _decide(item, decider, resolver, result)
        )
        if verdict is None:
            continue
        result.allowed = verdict.allowed
        result.violations = [v.model_dump() for v in verdict.violations]
        result.warnings = verdict.warnings
    # Denials first, each group in input order (sorted() is stable).
    results.sort(key=lambda r: r.allowed)
    return ReviewReport(results, prepared.skipped, prepared.errors)


async def _decide(
    item: PodUnderReview, decider: Decider, resolver: StaticClaimResolver, result: ReviewResult
) -> Verdict | None:
    """The verdict for a pod within the limits, or None for a pod that is not governed."""
    try:
        workload = decider.detect(item.pod, item.namespace, resolver)
    except DetectError as exc:
        return decider.detect_error_verdict(exc)
    result.gpu, result.accelerators = workload.gpu, workload.total
    result.detected = _detected(workload)
    result.unresolved_claims = [
        ERR_UNRESOLVED_CLAIM.format(
            name=c.name, kind=CLAIM_SOURCES[c.source], object_name=c.object_name
        )
        for c in workload.claims
        if not c.resolved
    ]
    if not workload.gpu:
        return None
    result.notes += item.intent_notes
    return await decider.decide(item.request, item.pod, workload)


# -- reporting ------------------------------------------------------------------------------------


def use_color(choice: str, stream: TextIO, environ: Mapping[str, str]) -> bool:
    """``--color``: always / never, or auto: a terminal, and NO_COLOR unset or empty
    (https://no-color.org: an explicit flag wins over the variable)."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return bool(stream.isatty()) and not environ.get("NO_COLOR")


def render_text(report: ReviewReport, *, color: bool = False) -> str:
    def paint(text: str, **style: Any) -> str:
        return click.style(text, **style) if color else text

    lines = []
    for r in report.results:
        verdict = paint("ALLOW", fg="green") if r.allowed else paint("DENY ", fg="red", bold=True)
        gpu = f"{r.accelerators} accelerator(s)" if r.gpu else "no accelerators: not governed"
        if r.detected:
            gpu += ": " + ", ".join(r.detected)
        lines.append(f"{verdict} {r.kind} {r.namespace}/{r.name} ({r.source}; {gpu})")
        for v in r.violations:
            enforcement = paint(
                f"{v['enforcement']:>6}", fg="red" if v["enforcement"] == "deny" else "yellow"
            )
            lines.append(f"    {enforcement}  {Violation.model_validate(v)}")
        lines.extend(f"    {paint('  note', fg='yellow')}  {m}" for m in r.unresolved_claims)
        lines.extend(f"    {paint('  note', fg='yellow')}  {m}" for m in r.notes)
    if report.skipped:
        kinds = Counter(s.kind for s in report.skipped)
        shown = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
        lines.append(paint(f"skipped (no pods; -o json lists them): {shown}", dim=True))
    summary = report.summary()
    if color:
        summary = paint(summary, fg="red" if report.exit_code else "green", bold=True)
    lines.append(summary)
    return "\n".join(lines)


def render_errors(errors: Iterable[InputError], *, color: bool = False) -> str:
    label = click.style("error:", fg="red", bold=True) if color else "error:"
    return "\n".join(f"{label} {e}" for e in errors)


def render_json(report: ReviewReport) -> str:
    return json.dumps(report.to_json(), indent=2)


def render_yaml(report: ReviewReport) -> str:
    return yaml.safe_dump(report.to_json(), sort_keys=False, allow_unicode=False).rstrip("\n")
