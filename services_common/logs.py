"""One logging format for every service process."""

from __future__ import annotations

import json
import logging
import os


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, service, level, logger, msg, and ``message_id``/``run_id``/``link`` when
    the call passes them (``log.info(..., extra={"message_id": mid})``)."""

    FIELDS = ("message_id", "run_id", "link", "listener")

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
               "service": self.service, "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        out |= {k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(service: str) -> logging.Logger:
    """Log to stderr as ``time service level message``, or as JSON lines when $DIFFSEM_LOG_FORMAT=json;
    level from $DIFFSEM_LOG_LEVEL (default INFO)."""
    level = os.environ.get("DIFFSEM_LOG_LEVEL", "INFO").upper()
    if os.environ.get("DIFFSEM_LOG_FORMAT", "").lower() == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter(service))
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
    return logging.getLogger(service)
