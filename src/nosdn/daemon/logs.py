"""Logging for a daemon: human lines by default, one JSON object per line with ``--log-format
json`` (what log collectors index without a parser).

Messages are written for people ("failed to add 10.244.3.0/24 (node node3): ..."); the values
that matter for searching ride along as ``extra={...}`` fields and appear as JSON keys.

``--log-level debug`` is nosdn's own debug output: the libraries below (botocore, urllib3, the
Kubernetes and Google clients) stay at INFO at most, since their debug output prints request
headers, signatures and session tokens.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = (
                    value if isinstance(value, int | float | bool | str | None) else str(value)
                )
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    ours = logging.getLevelName(level.upper())
    root.setLevel(max(ours, logging.INFO))
    logging.getLogger("nosdn").setLevel(ours)
