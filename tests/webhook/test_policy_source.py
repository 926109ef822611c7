"""The policy revision: what it covers (Rego and data), and `kube-intent policy revision`."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from webhook.cli import main
from webhook.policy_source import PolicySource, projection
from webhook.settings import BUNDLED_POLICIES

ENFORCEMENT_OVERRIDE = '{"kube_intent": {"config": {"enforcement": {"model-allowed": "warn"}}}}'


def bundle_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(BUNDLED_POLICIES, tmp_path / "policies"))


def edit_json(path: Path, edit: Callable[[dict[str, object]], None]) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def override_enforcement(policies: Path) -> None:
    def edit(document: dict[str, object]) -> None:
        document["kube_intent"]["config"]["enforcement"] = {"model-allowed": "warn"}  # type: ignore[index]

    edit_json(policies / "data.json", edit)


def reformat_data(policies: Path) -> None:
    document = json.loads((policies / "data.json").read_text())
    (policies / "data.json").write_text(json.dumps(document, indent=8, sort_keys=True))


def append_to_rule(policies: Path) -> None:
    rule = policies / "rules" / "model_allowed.rego"
    rule.write_text(rule.read_text() + "\n# a comment is part of the pushed module\n")


def edit_unit_test(policies: Path) -> None:
    test = policies / "rules" / "model_allowed_test.rego"
    test.write_text(test.read_text() + "\n# tests are never pushed\n")


def add_yaml_data(policies: Path) -> None:
    (policies / "team").mkdir()
    (policies / "team" / "data.yaml").write_text("gpus: 4\n")


def add_ignored_file(policies: Path) -> None:
    (policies / "notes.json").write_text('{"not": "data: only data.json and data.yaml are"}')


# name -> (edit of a copy of the bundle, whether the revision changes)
EDITS: dict[str, tuple[Callable[[Path], None], bool]] = {
    "data-json-enforcement-override": (override_enforcement, True),
    "data-yaml-added": (add_yaml_data, True),
    "rego-edited": (append_to_rule, True),
    "data-json-reformatted": (reformat_data, False),
    "unit-test-edited": (edit_unit_test, False),
    "other-file-added": (add_ignored_file, False),
}


@pytest.mark.parametrize("case", list(EDITS), ids=list(EDITS))
def test_the_revision_covers_what_decides(tmp_path: Path, case: str) -> None:
    edit, changes = EDITS[case]
    policies = bundle_copy(tmp_path)
    before = PolicySource.of(policies).load().revision
    assert before == PolicySource.of().load().revision  # where the files are does not count
    edit(policies)
    after = PolicySource.of(policies).load().revision
    assert (after != before) is changes


def test_extra_data_over_the_bundle_is_a_new_revision(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text(ENFORCEMENT_OVERRIDE)
    bundled = PolicySource.of().load().revision
    assert PolicySource.of(None, tmp_path).load().revision != bundled


# -- kube-intent policy revision -----------------------------------------------------------------


def test_revision_command_prints_the_revision_serve_computes(tmp_path: Path) -> None:
    policies = bundle_copy(tmp_path)
    override_enforcement(policies)
    result = CliRunner().invoke(main, ["policy", "revision", str(policies)])
    assert result.exit_code == 0, result.output
    assert result.output == PolicySource.of(policies).load().revision + "\n"
    bundled = CliRunner().invoke(main, ["policy", "revision"])
    assert bundled.output.strip() == PolicySource.of().load().revision != result.output.strip()


def test_revision_json_lists_every_file_with_its_digest(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "data.json").write_text(ENFORCEMENT_OVERRIDE)
    result = CliRunner().invoke(
        main, ["policy", "revision", "--extra-policies", str(extra), "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["revision"] == PolicySource.of(None, extra).load().revision
    assert [d["label"] for d in document["dirs"]] == ["bundled", "extra"]
    files = {(f["source"], f["path"]): f["sha256"] for f in document["files"]}
    assert (
        files[("extra", "data.json")] == hashlib.sha256(ENFORCEMENT_OVERRIDE.encode()).hexdigest()
    )
    rego = BUNDLED_POLICIES / "admission.rego"
    assert files[("bundled", "admission.rego")] == hashlib.sha256(rego.read_bytes()).hexdigest()
    assert not [path for _, path in files if path.endswith("_test.rego")]


def test_a_configmap_volume_names_the_version_the_kubelet_projected(tmp_path: Path) -> None:
    # As the kubelet lays out a ConfigMap volume: a timestamped directory, ..data -> it, and
    # one link per key through ..data.
    stamp = "..2026_11_29_22_58_12.123456789"
    (tmp_path / stamp).mkdir()
    (tmp_path / stamp / "data.json").write_text(ENFORCEMENT_OVERRIDE)
    (tmp_path / "..data").symlink_to(stamp)
    (tmp_path / "data.json").symlink_to("..data/data.json")
    assert projection(tmp_path) == stamp
    assert projection(BUNDLED_POLICIES) is None
    result = CliRunner().invoke(
        main, ["policy", "revision", "--extra-policies", str(tmp_path), "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    dirs = json.loads(result.output)["dirs"]
    assert [d["version"] for d in dirs] == [None, stamp]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({"data.json": "[1]"}, "must hold an object", id="data-not-an-object"),
        pytest.param({"x.rego": "allow := true\n"}, "the first statement must be", id="no-package"),
    ],
)
def test_revision_of_a_broken_directory_exits_2_naming_the_file(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(main, ["policy", "revision", "--extra-policies", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output
    assert str(tmp_path) in result.output
