"""One logging format for every service process."""

from __future__ import annotations

import logging
import os


def setup(service: str) -> logging.Logger:
    """Log to stderr as ``time service level message``; level from $DIFFSEM_LOG_LEVEL (default INFO)."""
    logging.basicConfig(level=os.environ.get("DIFFSEM_LOG_LEVEL", "INFO").upper(),
                        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
    return logging.getLogger(service)
