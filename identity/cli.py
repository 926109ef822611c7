"""`kube-intent keys ...` and `kube-intent token ...` (mounted into webhook.cli's main group)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from identity.grants import ENV_GRANT_FILE, ENV_TOKEN_ENDPOINT, ENV_TOKEN_FILE

if TYPE_CHECKING:
    from identity.keys import KeySet

# Each command imports what it runs (the token exchange pulls in the kubernetes client): `--help`
# of the whole CLI imports this module and must answer at once.

EXIT_REFUSED = 1
ENV_CA_FILE = "KUBE_INTENT_CA_FILE"

directory_argument = click.argument("directory", type=click.Path(file_okay=False, path_type=Path))


def _summary(keyset: KeySet) -> str:
    return "\n".join(f"{key.role:<8} {key.kid}" for key in keyset.verification)


# `-h` too, as under `kube-intent`: set here as well because click remembers a command's help
# option from its first invocation, which may be as a root (tests, `python -m`).
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=HELP_OPTIONS)
def keys() -> None:
    """ES256 signing keys: a directory of active.pem, next.pem and previous.pem.

    In a cluster the directory is a Secret; create or rotate the files locally, then
    update the Secret (kubectl create secret generic ... --from-file=DIR --dry-run=client
    -o yaml | kubectl apply -f -). The webhook reloads it without a restart.
    """


@keys.command("generate")
@directory_argument
@click.option(
    "--force", is_flag=True, help="replace existing keys (tokens they signed stop verifying)"
)
def keys_generate(directory: Path, force: bool) -> None:
    """Create active.pem and next.pem (0600) in DIRECTORY."""
    from identity.keys import KeyDirError, generate_keys

    try:
        keyset = generate_keys(directory, overwrite=force)
    except KeyDirError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(_summary(keyset))


@keys.command("rotate")
@directory_argument
def keys_rotate(directory: Path) -> None:
    """previous <- active, active <- next, next <- new.

    Rotate no more often than the longest grant lifetime: tokens signed by the key that is
    dropped (the old previous) stop verifying.
    """
    from identity.keys import KeyDirError, rotate_keys

    try:
        keyset = rotate_keys(directory)
    except KeyDirError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(_summary(keyset))


@keys.command("jwks")
@directory_argument
def keys_jwks(directory: Path) -> None:
    """Print the public JWKS of DIRECTORY (what /.well-known/jwks.json serves)."""
    from identity.keys import KeyDirError, KeySet

    try:
        keyset = KeySet.load(directory)
    except KeyDirError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(keyset.jwks(), indent=2))


@click.group(context_settings=HELP_OPTIONS)
def token() -> None:
    """Access tokens: fetch one in an agent's pod, verify one in a gateway."""


@token.command("fetch")
@click.option(
    "--endpoint",
    envvar=ENV_TOKEN_ENDPOINT,
    required=True,
    help=f"token endpoint URL [env: {ENV_TOKEN_ENDPOINT}, set by the webhook in admitted pods]",
)
@click.option(
    "--token-file",
    envvar=ENV_TOKEN_FILE,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"the projected ServiceAccount token [env: {ENV_TOKEN_FILE}]",
)
@click.option(
    "--grant-file",
    envvar=ENV_GRANT_FILE,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"the grant (downward API file) [env: {ENV_GRANT_FILE}]",
)
@click.option("--audience", required=True, help="the service the access token is for")
@click.option("--scope", default=None, help="space-separated scopes [default: all of the grant's]")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the token here (0600) [default: stdout]",
)
@click.option(
    "--ca-file",
    envvar=ENV_CA_FILE,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help=f"CA bundle of the token endpoint [env: {ENV_CA_FILE}; default: system CAs]",
)
@click.option("--once", is_flag=True, help="fetch one token and exit (default: keep refreshing)")
def token_fetch(
    endpoint: str,
    token_file: Path,
    grant_file: Path,
    audience: str,
    scope: str | None,
    out: Path | None,
    ca_file: Path | None,
    once: bool,
) -> None:
    """Exchange this pod's ServiceAccount token and grant for an access token."""
    from identity.fetch import FetchError, FetchSettings, run

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="kube-intent: %(message)s", stream=sys.stderr
        )
    settings = FetchSettings(
        endpoint=endpoint,
        token_file=token_file,
        grant_file=grant_file,
        audience=audience,
        scope=scope,
        out=None if out is None or str(out) == "-" else out,
        ca_file=ca_file,
    )
    try:
        asyncio.run(run(settings, once=once))
    except FetchError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


VERIFY_EXAMPLES = """\b
Examples:
  # an access token, in a gateway (the token on stdin, not in ps)
  kube-intent token verify - --jwks https://kube-intent.kube-intent.svc/.well-known/jwks.json \\
    --issuer https://kube-intent.kube-intent.svc --audience https://llm.example < token

\b
  # a pod's grant, against a local dev server
  kubectl get pod my-agent -o jsonpath='{.metadata.annotations.kube-intent\\.io/grant}' |
    kube-intent token verify - --grant --jwks https://127.0.0.1:8443/.well-known/jwks.json \\
    --ca-file .kube-intent/tls/ca.crt --issuer https://kube-intent.kube-intent.svc \\
    --audience https://kube-intent.kube-intent.svc/token
"""


@token.command("verify", epilog=VERIFY_EXAMPLES)
@click.argument("token_value", metavar="TOKEN")
@click.option("--jwks", "jwks_source", required=True, help="JWKS URL or file")
@click.option("--issuer", required=True, help="the issuer the token must name (iss)")
@click.option("--audience", required=True, help="the audience the token must be for (aud)")
@click.option("--scope", "scopes", multiple=True, help="a scope the token must hold (repeatable)")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CA bundle for an https JWKS URL",
)
@click.option(
    "--grant",
    "is_grant",
    is_flag=True,
    help="TOKEN is a grant (a pod's kube-intent.io/grant annotation), not an access token: "
    "signature, type, issuer, audience (the token endpoint, ISSUER/token) and lifetime",
)
def token_verify(
    token_value: str,
    jwks_source: str,
    issuer: str,
    audience: str,
    scopes: tuple[str, ...],
    ca_file: Path | None,
    is_grant: bool,
) -> None:
    """Verify an access token (or, with --grant, a grant) and print its claims. TOKEN '-'
    reads it from stdin.

    Prefer '-': a token on the command line is visible to other processes in `ps`.
    Exit status: 0 valid, 1 refused, other: bad input.
    """
    from identity.grants import GrantError, verify_published_grant
    from identity.verify import (
        AccessTokenError,
        JwksError,
        jwks_keys,
        load_jwks,
        verify_access_token,
    )

    value = sys.stdin.read().strip() if token_value == "-" else token_value  # noqa: S105
    try:
        jwks = load_jwks(jwks_source, ca_file)
    except JwksError as exc:
        raise click.ClickException(str(exc)) from None
    if is_grant:
        try:
            grant = verify_published_grant(
                value, jwks_keys(jwks).get, issuer=issuer, audience=audience
            )
        except GrantError as exc:
            click.echo(f"refused: {exc.reason}", err=True)
            sys.exit(EXIT_REFUSED)
        if not set(scopes) <= set(grant.scopes):
            click.echo("refused: scope", err=True)
            sys.exit(EXIT_REFUSED)
        click.echo(json.dumps(grant.to_claims(), indent=2, sort_keys=True))
        return
    try:
        claims = verify_access_token(
            value, jwks, issuer=issuer, audience=audience, required_scopes=scopes
        )
    except AccessTokenError as exc:
        click.echo(f"refused: {exc.reason}", err=True)
        sys.exit(EXIT_REFUSED)
    click.echo(json.dumps(claims.claims, indent=2, sort_keys=True))
