"""`kube-intent token fetch` against a recording HTTPS endpoint on loopback (real TLS, real HTTP).

The endpoint here only replays OAuth responses; the real exchange behind it is tested against a
real API server in test_exchange_e2e.py.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner

from identity.cli import token as token_cli
from identity.exchange import GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_GRANT, TOKEN_TYPE_JWT
from identity.fetch import FetchError, FetchSettings, refresh_delay, run, write_token
from tests.support.servers import HttpsServer, https_server

ACCESS = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLWEtdGVzdC10b2tlbg"
ISSUED = {
    "access_token": ACCESS,
    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "tool:kb-search:invoke",
}
REFUSED = {"error": "invalid_grant", "error_description": "the grant is invalid"}


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[HttpsServer]:
    with https_server(tmp_path / "tls") as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, endpoint: HttpsServer) -> FetchSettings:
    (tmp_path / "token").write_text("sa-token-1\n")
    (tmp_path / "grant").write_text("grant-1")
    return FetchSettings(
        endpoint=endpoint.url + "/token",
        token_file=tmp_path / "token",
        grant_file=tmp_path / "grant",
        audience="inference-gateway",
        scope="tool:kb-search:invoke",
        out=tmp_path / "out" / "access-token",
        ca_file=endpoint.ca_file,
    )


def form(request_body: bytes) -> dict[str, str]:
    parsed = parse_qs(request_body.decode(), strict_parsing=True)
    assert all(len(v) == 1 for v in parsed.values())
    return {k: v[0] for k, v in parsed.items()}


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_once_posts_the_form_and_writes_the_token_0600(
    settings: FetchSettings, endpoint: HttpsServer
) -> None:
    assert settings.out is not None
    settings.out.parent.mkdir()
    endpoint.responses.append((200, ISSUED))
    await run(settings, once=True)
    [request] = endpoint.requests
    assert request.method == "POST"
    assert request.path == "/token"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(request.body) == {
        "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
        "subject_token": "sa-token-1",
        "subject_token_type": TOKEN_TYPE_JWT,
        "actor_token": "grant-1",
        "actor_token_type": TOKEN_TYPE_GRANT,
        "audience": "inference-gateway",
        "scope": "tool:kb-search:invoke",
    }
    assert settings.out.read_text() == ACCESS
    assert stat.S_IMODE(os.stat(settings.out).st_mode) == 0o600
    assert os.listdir(settings.out.parent) == ["access-token"]  # no temporary file left


async def test_stdout_when_no_out_file(settings: FetchSettings, endpoint: HttpsServer) -> None:
    endpoint.responses.append((200, ISSUED))
    stdout = io.StringIO()
    await run(FetchSettings(**{**_fields(settings), "out": None}), once=True, stdout=stdout)
    assert stdout.getvalue() == ACCESS + "\n"


def _fields(settings: FetchSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in FetchSettings.__slots__}


async def test_loop_refreshes_at_80_percent_and_rereads_the_rotated_token(
    settings: FetchSettings, endpoint: HttpsServer
) -> None:
    assert settings.out is not None
    settings.out.parent.mkdir()
    endpoint.responses += [(200, ISSUED), (200, {**ISSUED, "expires_in": 100})]
    sleeps = Sleeps()

    async def rotate_then_sleep(delay: float) -> None:
        await sleeps(delay)
        settings.token_file.write_text("sa-token-2")  # the kubelet rotated the token

    await run(settings, once=False, sleep=rotate_then_sleep, max_rounds=3)
    assert sleeps.delays == [240.0, 80.0, 80.0]
    tokens = [form(r.body)["subject_token"] for r in endpoint.requests]
    assert tokens == ["sa-token-1", "sa-token-2", "sa-token-2"]


async def test_loop_backs_off_on_failure_and_keeps_the_last_token(
    settings: FetchSettings, endpoint: HttpsServer
) -> None:
    assert settings.out is not None
    settings.out.parent.mkdir()
    endpoint.responses += [(200, ISSUED), (400, REFUSED), (503, REFUSED), (400, REFUSED)]
    sleeps = Sleeps()
    await run(settings, once=False, sleep=sleeps, max_rounds=4)
    assert sleeps.delays == [240.0, 1.0, 2.0, 4.0]
    assert settings.out.read_text() == ACCESS


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        pytest.param(400, REFUSED, "invalid_grant", id="oauth-error"),
        pytest.param(502, {"oops": 1}, r"unusable response \(HTTP 502\)", id="not-oauth"),
        pytest.param(200, {**ISSUED, "token_type": "DPoP"}, "not Bearer", id="not-bearer"),
        pytest.param(200, {**ISSUED, "expires_in": 0}, "expires_in", id="no-lifetime"),
        pytest.param(200, {"token_type": "Bearer", "expires_in": 9}, "no access_token", id="empty"),
    ],
)
async def test_once_fails_with_a_readable_error(
    settings: FetchSettings,
    endpoint: HttpsServer,
    status: int,
    body: dict[str, Any],
    message: str,
) -> None:
    endpoint.responses.append((status, body))
    with pytest.raises(FetchError, match=message) as failure:
        await run(settings, once=True)
    assert ACCESS not in str(failure.value)


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        pytest.param("token", None, "cannot read ServiceAccount token file", id="no-token-file"),
        pytest.param("grant", "  \n", "grant file .* is empty", id="empty-grant"),
    ],
)
async def test_unreadable_inputs(
    settings: FetchSettings, file: str, content: str | None, message: str
) -> None:
    path = settings.token_file if file == "token" else settings.grant_file
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with pytest.raises(FetchError, match=message):
        await run(settings, once=True)


async def test_an_untrusted_endpoint_certificate_is_refused(
    settings: FetchSettings, endpoint: HttpsServer
) -> None:
    endpoint.responses.append((200, ISSUED))
    with pytest.raises(FetchError, match="cannot reach the token endpoint"):
        await run(FetchSettings(**{**_fields(settings), "ca_file": None}), once=True)
    assert endpoint.requests == []


def test_write_token_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.write_text("old")
    target.chmod(0o644)
    write_token(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


@pytest.mark.parametrize(
    ("expires_in", "delay"), [(300, 240.0), (10, 8.0), (1, 1.0)], ids=["5m", "10s", "floor"]
)
def test_refresh_delay(expires_in: int, delay: float) -> None:
    assert refresh_delay(expires_in) == delay


def test_fetch_cli_reads_paths_from_the_env_the_webhook_injects(
    settings: FetchSettings, endpoint: HttpsServer
) -> None:
    assert settings.out is not None
    endpoint.responses.append((200, ISSUED))
    result = CliRunner().invoke(
        token_cli,
        ["fetch", "--audience", "inference-gateway", "--out", "-", "--once"],
        env={
            "KUBE_INTENT_TOKEN_ENDPOINT": settings.endpoint,
            "KUBE_INTENT_TOKEN_FILE": str(settings.token_file),
            "KUBE_INTENT_GRANT_FILE": str(settings.grant_file),
            "KUBE_INTENT_CA_FILE": str(settings.ca_file),
        },
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ACCESS + "\n"
    assert "scope" not in form(endpoint.requests[0].body)


def test_fetch_cli_reports_a_refusal(settings: FetchSettings, endpoint: HttpsServer) -> None:
    endpoint.responses.append((400, REFUSED))
    result = CliRunner().invoke(
        token_cli,
        [
            "fetch",
            "--endpoint",
            settings.endpoint,
            "--token-file",
            str(settings.token_file),
            "--grant-file",
            str(settings.grant_file),
            "--ca-file",
            str(settings.ca_file),
            "--audience",
            "x",
            "--once",
        ],
    )
    assert result.exit_code == 1
    assert "invalid_grant" in result.output
