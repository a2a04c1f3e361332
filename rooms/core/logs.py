"""Log lines: JSON (LOG_FORMAT=json), one object a line, with the room and nickname fields
that consumer log calls pass in `extra`, for log pipelines to filter on; and one way of
naming a client, so that every line about it can be found with the same string."""

import logging
from collections.abc import Sequence

import orjson

# Fields of a LogRecord that every record has; anything else came from `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as a JSON object: time, level, logger, message, and the extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def address(client: Sequence | None) -> str:
    """A client in log lines: host:port as the server reports it, or "-" when unknown."""
    return f"{client[0]}:{client[1]}" if client else "-"
