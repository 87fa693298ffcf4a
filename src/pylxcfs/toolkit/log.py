"""Logging for the toolkit and the hook: logrus-style text lines (`time="..." level=info msg="..." k=v`), the format
the original lxcfs-tools printed, to stderr or appended to a --log file created 0600 (never through a symlink, only
to a regular file we own). Control and bidi characters in messages and fields are escaped."""

from __future__ import annotations

import logging
import os
import sys
import time
import unicodedata

from pylxcfs.errors import QuietError
from pylxcfs.toolkit.safefile import open_log

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
           "error": logging.ERROR}


def _escape_char(c: str) -> str:
    """Control, format (bidi overrides such as U+202E, zero-width marks) and separator characters as escapes: a log
    line shows what a tenant sent without letting it reorder or split what a reader sees."""
    if c == "\n":
        return "\\n"
    if c in ("\\", '"'):
        return "\\" + c
    if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
        o = ord(c)
        return f"\\x{o:02x}" if o < 0x100 else (f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return c


def _quote(v: object) -> str:
    s = str(v)
    if s and all(c.isascii() and (c.isalnum() or c in "-_./:@") for c in s):
        return s
    return '"' + "".join(_escape_char(c) for c in s) + '"'


class LogrusFormatter(logging.Formatter):
    """`time="2026-11-29T02:31:30Z" level=info msg="..." container=ID`; extra fields come from `extra={"kv": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        level = {"WARNING": "warning", "CRITICAL": "fatal"}.get(record.levelname, record.levelname.lower())
        parts = [f'time="{ts}"', f"level={level}", f"msg={_quote(record.getMessage())}"]
        kv = getattr(record, "kv", None)
        if isinstance(kv, dict):
            parts += [f"{k}={_quote(v)}" for k, v in kv.items() if v is not None]
        return " ".join(parts)


def setup(name: str, level: str = "info", log_file: str | None = None) -> logging.Logger:
    """Configure the `pylxcfs` logger tree once. A --log file that cannot be opened falls back to stderr, loudly."""
    if level.lower() not in _LEVELS:
        raise ValueError(f"unknown log level {level!r} (choose from {', '.join(sorted(_LEVELS))})")
    root = logging.getLogger("pylxcfs")
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    problem = None
    if log_file:
        try:
            fd = open_log(log_file)
            handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
        except (OSError, QuietError) as exc:
            handler = logging.StreamHandler(sys.stderr)
            problem = f"cannot open log file {log_file}: {exc}; logging to stderr"
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogrusFormatter())
    root.addHandler(handler)
    root.setLevel(_LEVELS[level.lower()])
    root.propagate = False
    log = logging.getLogger(f"pylxcfs.{name}")
    if problem:
        log.warning(problem)
    return log
