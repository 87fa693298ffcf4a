"""/proc/cpuinfo for a container: only its CPUs, renumbered from 0.

Role: one virtual file (registry "proc/cpuinfo"). `produce` reads the host cpuinfo and the cpuset (and, with
--enable-cfs, the CFS quota), then renders with the pure `render_cpuinfo`.

Rules (seed product page; virtual-files.md §6.3):
- keep the blocks of the container's CPUs (cpuset ∩ online; with --enable-cfs at most ceil(quota/period));
- "processor" counts from 0 and "physical id" equals it; "siblings : 1", "core id : 0", "cpu cores : 1"
  (the seed's rule, so lscpu sees N one-core sockets instead of a slice of the host topology). These keys
  exist on x86_64 and on s390x >= 4.7 blocks; arm64 and ppc64le have none, only "processor" changes;
- everything outside the blocks (32-bit ARM preamble, ppc64le timebase/platform trailer) is kept;
- s390x: "# processors" becomes the count, the "processor N: version = ..." lines are filtered and
  renumbered in place, and the "cpu number : N" blocks are filtered and renumbered. lxcfs drops the header's
  features/facilities/cache lines and every "cpu number" block on s390x (its am_printing flag is never set
  there); we keep them, because lscpu and feature probes read them.

Speed: the host file is parsed and turned into join-templates once per distinct content (cache in
env.states["cpuinfo"], keyed by the exact bytes: any change reparses), and each distinct selection of CPUs
is rendered once per host content; an open then costs the two file reads plus two dict lookups.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.parse.cpuinfo import CpuBlock, CpuInfo, S390Header, parse_cpuinfo
from pylxcfs.views.cpuview import select_cpus
from pylxcfs.views.readers import reader

__all__ = ["CompiledCpuinfo", "compile_cpuinfo", "produce", "render_cpuinfo"]

# Topology lines rewritten per the seed's rule. None = the renumbered index (same as "processor").
_TOPOLOGY: dict[str, str | None] = {"physical id": None, "siblings": "1", "core id": "0", "cpu cores": "1"}
# Matched only where str.find() saw "\n<key>" (a whole-block "^...$" re.M scan costs ~7 us per block).
_TOPO_RE = {k: re.compile(re.escape(k) + r"[ \t]*:[ \t]*(\d+)[ \t]*(?=\n|\Z)") for k in _TOPOLOGY}
_RENDER_CACHE_MAX = 256


@dataclass(frozen=True, slots=True)
class CompiledCpuinfo:
    """A parsed host cpuinfo plus each block's join-template, built on first use: parts such that
    str(index).join(parts) is the block shown as the index-th CPU. Lazy, because on real hardware "cpu MHz"
    changes between reads and each new host file is compiled again, while a container shows few blocks."""

    info: CpuInfo
    cpus: frozenset[int]  # CPUs the host file describes: block numbers, plus s390x "processor N:" lines
    templates: dict[int, tuple[str, ...]] = field(default_factory=dict)


def _compile_block(b: CpuBlock) -> tuple[str, ...]:
    # Edits (start, end, replacement); None marks a slot filled with the renumbered index.
    edits: list[tuple[int, int, str | None]] = [(b.num_start, b.num_end, None)]
    text = b.text
    for key, repl in _TOPOLOGY.items():
        j = text.find("\n" + key)
        while j >= 0:
            m = _TOPO_RE[key].match(text, j + 1)
            if m:
                edits.append((m.start(1), m.end(1), repl))
            j = text.find("\n" + key, j + 1)
    edits.sort()
    parts: list[str] = []
    cur: list[str] = []
    pos = 0
    for start, end, repl in edits:
        cur.append(b.text[pos:start])
        if repl is None:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(repl)
        pos = end
    cur.append(b.text[pos:])
    parts.append("".join(cur))
    return tuple(parts)


def compile_cpuinfo(info: CpuInfo) -> CompiledCpuinfo:
    """Wrap a parsed host file for rendering (templates are built per block on first use)."""
    cpus: set[int] = set()
    for p in info.pieces:
        if isinstance(p, CpuBlock):
            cpus.add(p.cpu)
        elif isinstance(p, S390Header):
            cpus.update(p.ids)  # s390x kernels < 4.7 print no "cpu number" blocks at all
    return CompiledCpuinfo(info, frozenset(cpus))


def _render_s390_header(h: S390Header, shown: Sequence[int]) -> str:
    lines = list(h.lines)
    if h.count_index is not None:
        lines[h.count_index] = f"{h.count_prefix}{len(shown)}"
    if h.ids_index is not None:
        lines[h.ids_index] = "\n".join(f"processor {k}:{h.ids[c]}" for k, c in enumerate(shown) if c in h.ids)
        if not lines[h.ids_index]:
            del lines[h.ids_index]
    return "\n".join(lines)


def render_cpuinfo(c: CompiledCpuinfo, shown: Sequence[int]) -> str:
    """The container's cpuinfo: blocks of the physical CPUs `shown`, in that order, numbered 0, 1, ...

    Pure (apart from memoising templates in `c`). Blocks keep their place relative to non-block text; CPUs
    without a host block are skipped.
    """
    index = {cpu: k for k, cpu in enumerate(cpu for cpu in shown if cpu in c.cpus)}
    out: list[str] = []
    for p in c.info.pieces:
        if isinstance(p, CpuBlock):
            k = index.get(p.cpu)
            if k is not None:
                parts = c.templates.get(p.cpu)
                if parts is None:
                    parts = c.templates[p.cpu] = _compile_block(p)
                out.append(str(k).join(parts))
        elif isinstance(p, S390Header):
            out.append(_render_s390_header(p, list(index)))
        else:
            out.append(p)
    text = "".join(out)
    if text and c.info.ends_with_newline and not text.endswith("\n"):
        text += "\n"  # s390x: the last block (which has no trailing blank line) may have been dropped
    return text


@dataclass(slots=True)
class CpuinfoCache:
    """env.states["cpuinfo"]: the last host file, compiled, and its renders by selection."""

    host: bytes = b""
    compiled: CompiledCpuinfo | None = None
    renders: dict[tuple[int, ...], str] = field(default_factory=dict)


def _compiled(env: ViewEnv, raw: bytes) -> CpuinfoCache:
    cache = env.states.get("cpuinfo")
    if not isinstance(cache, CpuinfoCache) or cache.compiled is None or cache.host != raw:
        info = parse_cpuinfo(raw.decode("utf-8", "replace"), env.root.proc_path("cpuinfo"))
        cache = CpuinfoCache(raw, compile_cpuinfo(info))
        env.states["cpuinfo"] = cache
    return cache


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """The caller's /proc/cpuinfo (raises on failure; the renderer then serves the host file)."""
    read = reader(env)
    raw = read(env.root.proc_path("cpuinfo"))
    cache = _compiled(env, raw)
    assert cache.compiled is not None
    sel = select_cpus(env, ctx, cache.compiled.cpus, read)
    shown = sel.shown_cpus
    text = cache.renders.get(shown)
    if text is None:
        text = render_cpuinfo(cache.compiled, shown)
        if len(cache.renders) >= _RENDER_CACHE_MAX:
            cache.renders.clear()
        cache.renders[shown] = text
    return text
