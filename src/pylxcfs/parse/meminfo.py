"""Parser for /proc/meminfo that keeps every line verbatim and in order (design.md §3.3), so the view can
rewrite known keys in place and pass unknown keys (new kernels add fields) through byte for byte.

Pure: text in, Meminfo out. Values are parsed lazily, per key, because the view needs only two or three.
"""

from __future__ import annotations

from dataclasses import dataclass

from pylxcfs.errors import ParseError


@dataclass(frozen=True, slots=True)
class Meminfo:
    """The host file: `keys[i]` is the name (without ':') of `lines[i]` (no trailing newline)."""

    keys: tuple[str, ...]
    lines: tuple[str, ...]

    def value_kib(self, key: str) -> int | None:
        """The number on `key`'s line (kB for most keys, a count for HugePages_*); None if absent."""
        try:
            i = self.keys.index(key)
        except ValueError:
            return None
        line = self.lines[i]
        try:
            return int(line[len(key) + 1 :].split()[0])
        except (IndexError, ValueError):
            raise ParseError("meminfo", f"bad value for {key}", i + 1, line) from None


def parse_meminfo(text: str, source: str = "meminfo") -> Meminfo:
    """Split /proc/meminfo into (key, line) pairs, keeping order and the kernel's exact padding."""
    lines = text.splitlines()
    keys: list[str] = []
    for lineno, line in enumerate(lines, 1):
        key, sep, _ = line.partition(":")
        if not sep:
            raise ParseError(source, "expected 'Key: value'", lineno, line)
        keys.append(key)
    return Meminfo(tuple(keys), tuple(lines))
