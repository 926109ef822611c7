"""The floor: a bare FastAPI handler that reads the review and allows it (echoing its uid),
served by uvicorn exactly as `kube-intent serve` configures it (TLS, the client-CA options, no
access log, uvloop with the C HTTP parser). What any Python admission webhook on this stack
costs at least.

    python bench/floor.py --port 9443 --cert tls.crt --key tls.key [--client-ca ca.crt]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import uvicorn
import uvloop
from fastapi import FastAPI, Request, Response
from starlette.requests import ClientDisconnect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webhook.client_auth import ClientCertificates
from webhook.serve import _Server, client_tls, run_until_signalled
from webhook.settings import Settings

ANSWER = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
    b'"response":{"uid":"%s","allowed":true}}'
)
# The request's uid, which the API server requires in the answer: found, not parsed, so the
# floor stays a floor.
UID = re.compile(rb'"uid"\s*:\s*"([0-9a-fA-F-]{1,64})"')


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def answer(request: Request) -> Response:
        try:
            body = await request.body()
        except ClientDisconnect:  # as the webhook does: nobody is left to answer
            return Response(status_code=400)
        uid = UID.search(body)
        return Response(ANSWER % (uid.group(1) if uid else b""), media_type="application/json")

    for path in ("/mutate", "/validate"):
        app.post(path)(answer)
    return app


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client-ca", type=Path, default=None)
    args = parser.parse_args()
    settings = Settings(client_ca=args.client_ca, trust_unauthenticated_admissions=True)
    config = uvicorn.Config(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        ssl_certfile=args.cert,
        ssl_keyfile=args.key,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        loop="uvloop",
        **client_tls(settings, ClientCertificates()),
    )
    await run_until_signalled(_Server(config))


if __name__ == "__main__":
    uvloop.run(main())
