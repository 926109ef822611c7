"""The client of the webhook's audit API (`kube-intent audit ... --server URL`).

An auditor reads the trail with their own cluster identity: the bearer token of a kubeconfig
context (exec credential plugins included, as the kubernetes client library runs them) or of
a file, checked by the webhook with a TokenReview and a SubjectAccessReview (`audit_api.py`).
The token goes in the Authorization header and nowhere else: never into a message, a log line
or an exception.

TLS is verified against the *webhook's* CA (`--ca-file`), which is not the cluster's: the
kubeconfig's certificate-authority signs the API server, not the webhook.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from pydantic import ValidationError

from webhook.audit.errors import CorruptRecord
from webhook.audit.record import StoredRecord
from webhook.audit.store import MAX_PAGE, AuditPage, Order
from webhook.audit_api import AUDITOR_ROLE

DECISIONS_PATH = "/audit/decisions"
PAGE = min(500, MAX_PAGE)
TIMEOUT_SECONDS = 30.0

ERR_SCHEME = (
    "--server must be an https:// URL (got {server!r}): the bearer token must not cross the "
    "network in clear"
)
ERR_KUBECONFIG = "cannot read credentials from the kubeconfig{where}: {detail}"
ERR_NO_BEARER = (
    "the kubeconfig context{where} has no bearer token (it authenticates with a client "
    "certificate or basic auth, which the audit API cannot check with a TokenReview): use a "
    "context with a token or an exec plugin, or --token-file"
)
ERR_TOKEN_FILE = "cannot read the token file {path}: {detail}"  # noqa: S105 - a message
ERR_EMPTY_TOKEN = "the token file {path} is empty"  # noqa: S105 - a message, not a secret
ERR_CA_FILE = "cannot read the CA file {path}: {detail}"
ERR_CONNECT = (
    "cannot reach the webhook at {server}: {detail}. Is the port-forward running (e.g. "
    "kubectl -n kube-intent port-forward svc/kube-intent 8443:443)?"
)
ERR_TLS = (
    "the webhook's certificate at {server} does not verify: {detail}. Pass --ca-file with the "
    "webhook's CA (not the cluster's: `kubectl get validatingwebhookconfiguration kube-intent "
    "-o jsonpath='{{.webhooks[0].clientConfig.caBundle}}' | base64 -d`) and, through a "
    "port-forward, --tls-server-name kube-intent.kube-intent.svc"
)
ERR_UNAUTHORIZED = (
    "the webhook rejected the bearer token of {source} (401: {detail}); log in again "
    "(the token may have expired) or pass another --context or --token-file"
)
ERR_FORBIDDEN = (
    "{detail} (403); a cluster admin grants it with: kubectl create clusterrolebinding "
    "<you>-{role} --clusterrole={role} --user=<you> (the role of a release named kube-intent; "
    "`kubectl get clusterroles | grep auditor` names yours)"
)
ERR_STATUS = "the webhook answered {status} to {path}: {detail}"
ERR_RECORD = (
    "the webhook returned a record this client cannot read ({detail}); upgrade kube-intent to "
    "the webhook's version"
)
ERR_NOT_JSON = "the webhook answered {status} to {path} with something other than JSON"


class AuditClientError(Exception):
    """The trail could not be read through the API; the message says what to do."""


@dataclass(frozen=True)
class Credentials:
    """A bearer token and where it came from (for messages). The token is never shown."""

    source: str
    _token: Callable[[], str] = field(repr=False)

    def header(self) -> str:
        return f"Bearer {self._token()}"


def token_file(path: Path) -> Credentials:
    """A token read from a file (e.g. a projected ServiceAccount token), read again per request:
    kubelet rotates those files."""

    def read() -> str:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise AuditClientError(ERR_TOKEN_FILE.format(path=path, detail=exc.strerror)) from None
        if not token:
            raise AuditClientError(ERR_EMPTY_TOKEN.format(path=path))
        return token

    read()  # fail before the first request, with the file's name
    return Credentials(f"token file {path}", read)


def kubeconfig(path: str | None, context: str | None) -> Credentials:
    """The bearer token of a kubeconfig context (the current one by default).

    The kubernetes client library runs exec credential plugins and OIDC refreshes; its refresh
    hook is called before each request, so a token that expires mid-export is renewed.
    """
    where = (f" {path}" if path else "") + (f" (context {context})" if context else "")
    configuration = kube_client.Configuration()
    try:
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except Exception as exc:  # ConfigException, YAML, OSError, an exec plugin that failed
        raise AuditClientError(ERR_KUBECONFIG.format(where=where, detail=exc)) from None

    def bearer() -> str:
        hook = configuration.refresh_api_key_hook
        if hook is not None:
            try:
                hook(configuration)
            except Exception as exc:  # an exec plugin that fails on renewal
                raise AuditClientError(ERR_KUBECONFIG.format(where=where, detail=exc)) from None
        value = str(configuration.api_key.get("BearerToken") or "")
        scheme, _, token = value.partition(" ")
        if scheme != "Bearer" or not token:
            raise AuditClientError(ERR_NO_BEARER.format(where=where))
        return token

    bearer()
    return Credentials(f"the kubeconfig context{where or ' (current)'}", bearer)


def tls_verification(ca_file: Path | None, insecure: bool) -> ssl.SSLContext | bool:
    """What httpx verifies the webhook with: its CA, the system's CAs, or (insecure) nothing."""
    if insecure:
        return False
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise AuditClientError(ERR_CA_FILE.format(path=ca_file, detail=exc)) from None


class AuditClient:
    """Pages of records from `GET /audit/decisions`, one record from `.../{id}`."""

    def __init__(
        self,
        server: str,
        credentials: Credentials,
        *,
        verify: ssl.SSLContext | bool,
        tls_server_name: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
        page_size: int = PAGE,
    ) -> None:
        if not server.startswith("https://"):
            raise AuditClientError(ERR_SCHEME.format(server=server))
        self.server = server.rstrip("/")
        self.page_size = max(1, min(page_size, MAX_PAGE))
        self._credentials = credentials
        # Through a port-forward the URL says 127.0.0.1 while the certificate names the
        # Service: verify (and send SNI) for that name instead, as kubectl's tls-server-name.
        self._extensions = {"sni_hostname": tls_server_name} if tls_server_name else {}
        self._http = httpx.Client(base_url=self.server, verify=verify, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._http.close()

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> httpx.Response:
        headers = {"Authorization": self._credentials.header(), "Accept": "application/json"}
        try:
            return self._http.get(path, params=params, headers=headers, extensions=self._extensions)
        except httpx.ConnectError as exc:
            if _is_tls_failure(exc):
                raise AuditClientError(ERR_TLS.format(server=self.server, detail=exc)) from None
            raise AuditClientError(ERR_CONNECT.format(server=self.server, detail=exc)) from None
        except httpx.HTTPError as exc:
            raise AuditClientError(ERR_CONNECT.format(server=self.server, detail=exc)) from None

    def _json(self, response: httpx.Response, path: str) -> Any:
        try:
            body = response.json()
        except ValueError:
            raise AuditClientError(
                ERR_NOT_JSON.format(status=response.status_code, path=path)
            ) from None
        if response.status_code == 200:
            return body
        detail = str(body.get("error", body)) if isinstance(body, dict) else str(body)
        corrupt = body.get("corrupt") if isinstance(body, dict) else None
        if isinstance(corrupt, dict):  # a finding, not an outage: raised as the store would
            raise CorruptRecord(
                corrupt.get("seq"), str(corrupt.get("reason")), record_id=corrupt.get("id")
            )
        if response.status_code == 401:
            message = ERR_UNAUTHORIZED.format(source=self._credentials.source, detail=detail)
        elif response.status_code == 403:
            message = ERR_FORBIDDEN.format(detail=detail.rstrip("."), role=AUDITOR_ROLE)
        else:
            message = ERR_STATUS.format(status=response.status_code, path=path, detail=detail)
        raise AuditClientError(message)

    def page(
        self,
        params: Mapping[str, str],
        cursor: str | None = None,
        limit: int | None = None,
        order: Order = "desc",
    ) -> AuditPage:
        query = {**params, "limit": str(limit or self.page_size), "order": order}
        if cursor is not None:
            query["cursor"] = cursor
        body = self._json(self._get(DECISIONS_PATH, query), DECISIONS_PATH)
        return AuditPage(
            records=[_record(item) for item in body.get("items", [])],
            next_cursor=body.get("nextCursor"),
        )

    def records(
        self, params: Mapping[str, str], limit: int | None = None, order: Order = "desc"
    ) -> Iterator[StoredRecord]:
        """Matching records across every page (or the first `limit`), fetched as consumed."""
        cursor: str | None = None
        seen = 0
        while limit is None or seen < limit:
            size = self.page_size if limit is None else min(self.page_size, limit - seen)
            page = self.page(params, cursor, size, order)
            yield from page.records
            seen += len(page.records)
            cursor = page.next_cursor
            if cursor is None:
                return

    def get(self, record_id: int) -> StoredRecord | None:
        path = f"{DECISIONS_PATH}/{record_id}"
        response = self._get(path)
        if response.status_code == 404 and "no decision" in response.text:
            return None
        return _record(self._json(response, path))


def _record(item: Any) -> StoredRecord:
    try:
        return StoredRecord.model_validate(item)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        detail = f"{where}: {first['msg']}" if where else first["msg"]
        raise AuditClientError(ERR_RECORD.format(detail=detail)) from None


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
