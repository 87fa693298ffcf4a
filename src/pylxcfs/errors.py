"""Exception hierarchy shared by every layer (design.md §3.6).

Lower layers raise these; only the FUSE front-ends turn them into errnos and only the CLIs turn
`QuietError` into an exit code. Nothing here logs.
"""

from __future__ import annotations


class PylxcfsError(Exception):
    """Base class of every error pylxcfs raises on purpose."""


class ParseError(PylxcfsError):
    """A procfs/cgroupfs text did not have the shape we need."""

    def __init__(self, source: str, reason: str, lineno: int | None = None, line: str | None = None) -> None:
        self.source = source
        self.reason = reason
        self.lineno = lineno
        self.line = line
        where = f"{source}:{lineno}" if lineno is not None else source
        super().__init__(f"{where}: {reason}" + (f": {line!r}" if line is not None else ""))


class CgroupUnavailable(PylxcfsError):
    """A cgroup file we cannot do without is missing or unreadable."""

    def __init__(self, path: str, reason: str = "missing") -> None:
        self.path = path
        super().__init__(f"{path}: {reason}")


class ProcessGone(PylxcfsError):
    """The pid we were asked about exited (ENOENT/ESRCH under /proc/<pid>)."""


class NotInContainer(PylxcfsError):
    """The caller runs in the host's pid namespace."""


class QuietError(PylxcfsError):
    """A user or environment error: the CLI prints the message (no traceback) and exits with `exit_code`."""

    def __init__(self, msg: str, exit_code: int = 1) -> None:
        self.exit_code = exit_code
        super().__init__(msg)


class RegistryError(QuietError):
    """A registry row names a view module or function that does not exist: the daemon refuses to start."""
