"""Policy sets: the Rego and data the webhook pushes into OPA, read from policy directories.

A policy directory holds Rego modules (``*.rego``; ``*_test.rego`` unit tests are never pushed)
and data documents (``data.json``, ``data.yaml``), which land at the data path of their directory
as with ``opa run``. The bundled set ships inside the package (``webhook/policies``, found with
importlib.resources). An operator's extra directory (the chart's ConfigMap) is added on top: its
Rego joins the bundled Rego, and its data is deep-merged over the bundled data (objects merge key
by key; any other value replaces the bundled one).

OPA compiles every module it is given together with the ones it already holds, so the files of a
package that refer to each other cannot be pushed one at a time (kube_intent.admission: the
decision reads ``rule_catalog``, which the rule files define, and the rules call
``new_violation``, which admission.rego defines; no order compiles). Each package is therefore
pushed as ONE module: its files one after the other, their ``package`` and ``import`` lines (and
a package's ``# METADATA`` block) hoisted into a shared header. Every line of the module remembers
the file and line it came from, so OPA's errors name the file the operator wrote.

The revision is a digest of exactly what is pushed: every module's text and the merged data
documents (so an edit of data.json, such as an enforcement override, is a new revision;
reformatting it is not). `kube-intent policy revision DIR` prints it without OPA.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml

from identity import jsonio

# Module ids the webhook owns in OPA: one per Rego package.
MODULE_PREFIX = "kube-intent/"
# Data the webhook writes itself: the Agent registrations, and the record of the pushed set.
AGENTS_PATH = "kube_intent/agents"
MARKER_PATH = "kube_intent/loaded"
RESERVED_DATA = (AGENTS_PATH, MARKER_PATH)
DATA_FILES = ("data.json", "data.yaml", "data.yml")
REVISION_CHARS = 12
# OPA's own namespaces: not the policies' to define.
_RESERVED_PACKAGES = ("system",)

_PACKAGE = re.compile(r"package\s+(?P<ref>[^#]+?)\s*(?:#.*)?")
_IMPORT = re.compile(
    r"import\s+(?P<path>[^\s#]+)(?:\s+as\s+(?P<alias>[A-Za-z_][A-Za-z0-9_]*))?\s*(?:#.*)?"
)
_METADATA = "# METADATA"


class PolicyError(ValueError):
    """The policy directories cannot be made into a policy set (the message names the file)."""


def bundled_policies() -> Path:
    """The Rego bundle shipped in the package (``webhook/policies``)."""
    root = resources.files("webhook").joinpath("policies")
    if not isinstance(root, Path):  # a zipped install: OPA and `opa test` need real files
        raise PolicyError(f"the bundled policies are not files on disk ({root}): install unzipped")
    return root


@dataclass(frozen=True, slots=True)
class PolicyDir:
    """One policy directory: ``label`` says which (bundled, policies, extra) in logs and loads."""

    label: str
    path: Path

    def __str__(self) -> str:
        return f"{self.label}:{self.path}"


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """A file of a pushed set: its directory's label, its path there, and its digest."""

    source: str
    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Origin:
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Part:
    """One file of a module: its text and the (0-based) line of its package statement."""

    file: str
    text: str
    package_line: int


@dataclass(frozen=True, slots=True)
class Module:
    """One Rego package as pushed: ``origins[i]`` is where line ``i + 1`` of ``text`` came from."""

    id: str
    package: str
    text: str
    origins: tuple[Origin, ...] = field(repr=False)
    parts: tuple[Part, ...] = field(repr=False)

    def where(self, row: int, col: int = 0) -> str:
        if not self.origins or row < 1:
            return f"{self.id}:{row}"
        if row > len(self.origins):  # the end of the text (an unexpected end of file)
            last = self.origins[-1]
            return f"{last.file}:{last.line + row - len(self.origins)}"
        origin = self.origins[row - 1]
        return f"{origin.file}:{origin.line}" + (f":{col}" if col else "")


@dataclass(frozen=True, slots=True)
class PolicySet:
    """What is pushed into OPA: one module per package and the data documents by OPA path."""

    dirs: tuple[PolicyDir, ...]
    modules: tuple[Module, ...]
    data: dict[str, Any]
    files: tuple[PolicyFile, ...]
    revision: str

    def module(self, module_id: str) -> Module | None:
        return next((m for m in self.modules if m.id == module_id), None)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(str(d) for d in self.dirs)

    def to_json(self) -> dict[str, Any]:
        """What `kube-intent policy revision -o json` prints: the revision and what made it."""
        return {
            "revision": self.revision,
            "dirs": [
                {"label": d.label, "path": str(d.path), "version": projection(d.path)}
                for d in self.dirs
            ],
            "modules": [m.id for m in self.modules],
            "data": sorted(self.data),
            "files": [{"source": f.source, "path": f.path, "sha256": f.sha256} for f in self.files],
        }


@dataclass(frozen=True, slots=True)
class PolicyLoad:
    """One attempt to load a policy set into OPA: what the audit trail records (``on_load``).

    ``reason`` is startup, change (the directories changed) or opa-restart (OPA lost them);
    ``error`` is set when OPA or the loader refused the set, which then did not replace the
    ``previous`` revision.
    """

    revision: str
    previous: str | None
    reason: str
    sources: tuple[str, ...]
    files: tuple[PolicyFile, ...]
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class _Entry:
    dir: PolicyDir
    path: str
    location: Path
    content: bytes


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The bytes of every policy file at one moment; ``fingerprint`` changes when any does."""

    dirs: tuple[PolicyDir, ...]
    entries: tuple[_Entry, ...]
    fingerprint: str

    @property
    def files(self) -> tuple[PolicyFile, ...]:
        return tuple(
            PolicyFile(e.dir.label, e.path, hashlib.sha256(e.content).hexdigest())
            for e in self.entries
        )

    def build(self) -> PolicySet:
        rego = [e for e in self.entries if e.path.endswith(".rego")]
        modules = _modules([_parse(e) for e in rego])
        data = _data_roots([e for e in self.entries if not e.path.endswith(".rego")])
        digest = hashlib.sha256()
        for module in modules:
            digest.update(module.id.encode() + b"\0" + module.text.encode() + b"\0")
        digest.update(b"data\0" + orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
        return PolicySet(self.dirs, modules, data, self.files, digest.hexdigest()[:REVISION_CHARS])


class PolicySource:
    """The policy directories of a webhook: the main one (bundled by default) and the extra one."""

    def __init__(self, dirs: Sequence[PolicyDir]) -> None:
        if not dirs:
            raise PolicyError("no policy directory")
        self.dirs = tuple(dirs)

    @classmethod
    def of(cls, policies: Path | None = None, extra: Path | None = None) -> PolicySource:
        bundled = bundled_policies()
        main = policies or bundled
        label = "bundled" if _same(main, bundled) else "policies"
        dirs = [PolicyDir(label, main)]
        if extra is not None:
            dirs.append(PolicyDir("extra", extra))
        return cls(dirs)

    def __str__(self) -> str:
        return ", ".join(self.sources)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(str(d) for d in self.dirs)

    def snapshot(self) -> Snapshot:
        """Read every policy file (PolicyError: a directory is missing; OSError: a file changed
        while it was read)."""
        entries: list[_Entry] = []
        digest = hashlib.sha256()
        for directory in self.dirs:
            if not directory.path.is_dir():
                raise PolicyError(f"policy directory {directory.path} does not exist")
            for path, location in _walk(directory.path):
                content = location.read_bytes()
                entries.append(_Entry(directory, path, location, content))
                digest.update(f"{directory.label}\0{path}\0{len(content)}\0".encode() + content)
        return Snapshot(self.dirs, tuple(entries), digest.hexdigest())

    def load(self) -> PolicySet:
        try:
            return self.snapshot().build()
        except OSError as exc:
            raise PolicyError(f"cannot read the policies: {exc}") from None

    def write_tree(self, dest: Path) -> None:
        """The set as one directory `opa check`/`opa test` can read: the Rego files under
        ``<label>/``, the unit tests only of the last directory (the extra one: its rules change
        what the bundled tests expect, such as the rule catalogue), and the merged data as the
        root data.json (OPA's own loader refuses data that overrides other data)."""
        policy_set = self.load()
        for directory in self.dirs:
            tests = directory is self.dirs[-1]
            for path in _rego_tree(directory.path):
                if path.name.endswith("_test.rego") and not tests:
                    continue
                target = dest / directory.label / path.relative_to(directory.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
        document: dict[str, Any] = {}
        for data_path, value in policy_set.data.items():
            head, _, tail = data_path.partition("/")
            if tail:
                document.setdefault(head, {})[tail] = value
            else:
                document[head] = value
        (dest / "data.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))


CONFIGMAP_DATA_LINK = "..data"


def projection(directory: Path) -> str | None:
    """The version of a mounted ConfigMap (or Secret, projected volume) as the kubelet wrote it.

    The kubelet writes each version of the volume into a new timestamped directory
    (``..2026_11_29_22_58_12.123456789``) and swaps the ``..data`` link to it atomically. That
    name is all the volume tells: not the ConfigMap's resourceVersion (the Kubernetes API has
    it; the files' digests recorded beside this identify the content). None for a plain
    directory.
    """
    try:
        target = (directory / CONFIGMAP_DATA_LINK).readlink()
    except OSError:  # no link: not a projected volume
        return None
    return target.name or None


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _walk(root: Path, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """Policy files under `root`, sorted. Names starting with "." are skipped (a ConfigMap
    volume's ..data links would otherwise load every file twice); symlinked files are followed,
    symlinked directories are not."""
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name.startswith("."):
            continue
        path = f"{prefix}{name}"
        if entry.is_dir():
            if not entry.is_symlink():
                yield from _walk(entry, f"{path}/")
        elif (name.endswith(".rego") and not name.endswith("_test.rego")) or name in DATA_FILES:
            yield path, entry


def _rego_tree(root: Path) -> Iterator[Path]:
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not entry.is_symlink():
                yield from _rego_tree(entry)
        elif entry.name.endswith(".rego"):
            yield entry


# -- Rego: one module per package --------------------------------------------------------------


@dataclass(slots=True)
class _Parsed:
    file: str
    lines: list[str]
    package: str
    package_line: int
    metadata: range
    imports: list[tuple[int, str, str | None]]

    @property
    def hoisted(self) -> set[int]:
        return {*self.metadata, self.package_line, *(line for line, _, _ in self.imports)}


def _parse(entry: _Entry) -> _Parsed:
    file = str(entry.location)
    try:
        text = entry.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = text.split("\n")
    stripped = [line.strip() for line in lines]
    first = next((i for i, s in enumerate(stripped) if s and not s.startswith("#")), None)
    if first is None:
        raise PolicyError(f"{file}: no package statement")
    match = _PACKAGE.fullmatch(stripped[first])
    if match is None:
        raise PolicyError(f"{file}:{first + 1}: the first statement must be `package <name>`")
    package = re.sub(r"\s+", "", match["ref"])
    if package.split(".")[0] in _RESERVED_PACKAGES:
        raise PolicyError(f"{file}:{first + 1}: package {package} is reserved by OPA")
    # A `# METADATA` block right above the package statement annotates the package.
    top = first
    while top > 0 and stripped[top - 1].startswith("#"):
        top -= 1
    starts = [i for i in range(top, first) if stripped[i] == _METADATA]
    metadata = range(starts[-1], first) if starts else range(0)
    imports: list[tuple[int, str, str | None]] = []
    for i in range(first + 1, len(lines)):
        if not stripped[i] or stripped[i].startswith("#"):
            continue
        found = _IMPORT.fullmatch(stripped[i])
        if found is None:
            break
        imports.append((i, found["path"], found["alias"]))
    return _Parsed(file, lines, package, first, metadata, imports)


def _binds(path: str, alias: str | None) -> str | None:
    """The name an import binds (None for the keyword imports)."""
    if alias:
        return alias
    if path == "rego.v1" or path.startswith("future."):
        return None
    last = path.rsplit(".", 1)[-1]
    return last if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", last) else None


def _modules(parsed: list[_Parsed]) -> tuple[Module, ...]:
    packages: dict[str, list[_Parsed]] = {}
    for item in parsed:
        packages.setdefault(item.package, []).append(item)
    return tuple(_module(name, files) for name, files in sorted(packages.items()))


def _module(package: str, files: list[_Parsed]) -> Module:
    out: list[tuple[str, Origin]] = []
    for item in files:
        out += [(item.lines[i], Origin(item.file, i + 1)) for i in item.metadata]
    first = files[0]
    out.append((f"package {package}", Origin(first.file, first.package_line + 1)))
    bound: dict[str, tuple[str, str]] = {}
    seen: set[tuple[str, str | None]] = set()
    for item in files:
        for line, path, alias in item.imports:
            where = f"{item.file}:{line + 1}"
            if (path, alias) in seen:
                continue
            seen.add((path, alias))
            name = _binds(path, alias)
            if name is not None and name in bound:
                other, other_where = bound[name]
                raise PolicyError(
                    f"{where}: `import {path}` binds {name!r}, which {other_where} binds to "
                    f"{other}: the files of package {package} are loaded into OPA as one "
                    "module, so their imports must agree"
                )
            if name is not None:
                bound[name] = (path, where)
            out.append((item.lines[line].strip(), Origin(item.file, line + 1)))
    for item in files:
        hoisted = item.hoisted
        out += [
            ("" if i in hoisted else text, Origin(item.file, i + 1))
            for i, text in enumerate(item.lines)
        ]
    text = "\n".join(line for line, _ in out) + "\n"
    parts = tuple(Part(f.file, "\n".join(f.lines), f.package_line) for f in files)
    return Module(MODULE_PREFIX + package, package, text, tuple(o for _, o in out), parts)


# -- data ----------------------------------------------------------------------------------------


def _document(entry: _Entry) -> dict[str, Any]:
    file = str(entry.location)
    try:
        if entry.path.endswith(".json"):
            document = jsonio.loads(entry.content)
        else:
            document = yaml.safe_load(entry.content.decode("utf-8"))
            jsonio.check_plain(document)
    except (ValueError, yaml.YAMLError) as exc:
        raise PolicyError(f"{file}: not a data document: {exc}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise PolicyError(f"{file}: a data file must hold an object, not {type(document).__name__}")
    for segment in reversed(entry.path.split("/")[:-1]):
        document = {segment: document}
    return document


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _data_roots(entries: list[_Entry]) -> dict[str, Any]:
    """The merged data as the documents PUT into OPA: one per top-level key, and one per key of
    ``kube_intent`` (whose ``agents`` and ``loaded`` the webhook writes itself)."""
    merged: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    for entry in entries:
        document = _document(entry)
        for key, value in document.items():
            paths = (
                [f"kube_intent/{k}" for k in value]
                if key == "kube_intent" and isinstance(value, dict)
                else [key]
            )
            for path in paths:
                set_by.setdefault(path, str(entry.location))
        _merge(merged, document)
    roots: dict[str, Any] = {}
    for key, value in merged.items():
        if key != "kube_intent":
            roots[_segment(key, set_by)] = value
            continue
        if not isinstance(value, dict):
            raise PolicyError(f"{set_by.get(key, 'data')}: data.kube_intent must be an object")
        for name, document in value.items():
            roots[f"kube_intent/{_segment(name, set_by)}"] = document
    for path in roots:
        if path in RESERVED_DATA:
            raise PolicyError(
                f"{set_by[path]}: data.{path.replace('/', '.')} is written by the webhook "
                "and cannot be set by a data file"
            )
    return roots


def _segment(key: str, set_by: dict[str, str]) -> str:
    if not key or "/" in key:
        raise PolicyError(f"{set_by.get(key, 'data')}: invalid data key {key!r}")
    return key
