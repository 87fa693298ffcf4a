"""--container-id resolution (toolkit.md §6.12 decision 2): exact id, then unique prefix of an id (short or full),
then exact name. Ambiguous or unknown -> QuietError(exit 1) listing the candidates. Pure: the query is only ever
compared with ids discovery already validated, never used to build a path."""

from __future__ import annotations

from pylxcfs.errors import QuietError
from pylxcfs.toolkit.discovery import Candidate


def _show(cands: list[Candidate], limit: int = 20) -> str:
    items = [f"{c.id}" + (f" ({c.name})" if c.name else "") + f" pid {c.pid}" for c in cands[:limit]]
    more = f", ... {len(cands) - limit} more" if len(cands) > limit else ""
    return ", ".join(items) + more


def resolve_id(query: str, cands: list[Candidate]) -> Candidate:
    q = query.strip()
    if not q:
        raise QuietError("empty container id", 1)
    exact = [c for c in cands if c.id == q or q in c.aliases]
    if len(exact) == 1:
        return exact[0]
    prefix = [c for c in cands if c.id.startswith(q) or any(a.startswith(q) for a in c.aliases)]
    if len(prefix) == 1:
        return prefix[0]
    if len(prefix) > 1:
        raise QuietError(f"container id {q!r} is ambiguous; candidates: {_show(prefix)}", 1)
    named = [c for c in cands if c.name == q]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise QuietError(f"container name {q!r} is ambiguous; candidates: {_show(named)}", 1)
    known = _show(cands) if cands else "none found"
    raise QuietError(f"No such container {q!r} in this node; running containers: {known}", 1)
