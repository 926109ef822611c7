"""Structured JSON logging: one line per decision, never a credential."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

DECISION_LOGGER = "kube_intent.decision"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.levelno >= logging.ERROR:
            # Type and message only: a traceback in a log line is noise for operators.
            line["error"] = (
                f"{record.exc_info[0].__name__ if record.exc_info[0] else ''}: {record.exc_info[1]}"
            )
        return json.dumps(line, separators=(",", ":"), default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates the decision line and its own format is not JSON.
    logging.getLogger("uvicorn.access").disabled = True


def log_decision(fields: dict[str, Any]) -> None:
    logging.getLogger(DECISION_LOGGER).info("admission decision", extra={"fields": fields})
