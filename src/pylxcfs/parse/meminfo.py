"""Parser for /proc/meminfo that keeps the host lines verbatim and in order (design.md §3.3), so the view can
rewrite known keys in place and pass unknown keys (new kernels add fields) through byte for byte.

Pure: text in, Meminfo out. Speed (this runs on every open): the key list is one list comprehension (~3 us)
and the key -> line-number index is cached per exact key sequence (a kernel's meminfo keys never change
while it runs), so no per-line dict building happens on the request path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pylxcfs.errors import ParseError

_LAYOUTS: dict[tuple[str, ...], dict[str, int]] = {}
_PREFIX: dict[str, str] = {}


def _build_index(lines: list[str], source: str) -> dict[str, int]:
    idx: dict[str, int] = {}
    for i, line in enumerate(lines):
        key, sep, _ = line.partition(":")
        if not sep:
            raise ParseError(source, "expected 'Key: value'", i + 1, line)
        idx.setdefault(key, i)
    return idx


@dataclass(slots=True)
class Meminfo:
    """The host file as lines (no newlines) plus the index of each key's line."""

    lines: list[str]
    index: dict[str, int]

    @property
    def keys(self) -> tuple[str, ...]:
        """Key names in file order (without ':')."""
        return tuple(line.partition(":")[0] for line in self.lines)

    def value_kib(self, key: str) -> int | None:
        """The number on `key`'s line (kB for most keys, a count for HugePages_*); None if absent."""
        i = self.index.get(key)
        if i is None:
            return None
        line = self.lines[i]
        try:
            return int(line[len(key) + 1 :].split()[0])
        except (IndexError, ValueError):
            raise ParseError("meminfo", f"bad value for {key}", i + 1, line) from None

    def rewrite(self, values: Mapping[str, int]) -> str:
        """The text with each key in `values` rewritten in the kernel's layout (fs/proc/meminfo.c
        show_val_kb: name padded to 16 columns, value right-aligned in 8 (wider if needed), " kB"); all other
        lines unchanged. Keys the host file lacks are not added (the host decides which keys exist)."""
        lines = list(self.lines)
        for key, v in values.items():
            i = self.index.get(key)
            if i is None:
                continue
            prefix = _PREFIX.get(key)
            if prefix is None:
                prefix = _PREFIX[key] = f"{key + ':':<16}"
            lines[i] = prefix + str(v).rjust(8) + " kB"
        lines.append("")
        return "\n".join(lines)


def parse_meminfo(text: str, source: str = "meminfo") -> Meminfo:
    """Split /proc/meminfo into lines and key positions, keeping the kernel's exact padding."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    keys = tuple([line.partition(":")[0] for line in lines])
    idx = _LAYOUTS.get(keys)
    if idx is None:
        idx = _build_index(lines, source)
        if len(_LAYOUTS) < 64:  # one per kernel; a few more for fixture trees
            _LAYOUTS[keys] = idx
    return Meminfo(lines, idx)
