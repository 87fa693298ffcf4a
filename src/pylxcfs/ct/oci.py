"""OCI hook input (runtime-spec `state`) and the subset of config.json the toolkit needs, as frozen dataclasses.

Pure: text in, records out. Dialects handled (engines.md §1, toolkit.md §2.10, §6.8):
- runc: no `root` in the state; rootfs = `<bundle>/config.json` root.path (relative to the bundle when relative).
- crun: `"root": "rootfs"` (relative to the bundle); createContainer gives pid 0.
- iSulad/lcr: absolute `root`; very old states use `bundlePath` instead of `bundle`.
Container ids are validated before anyone may build a path from them.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from pylxcfs.errors import QuietError

# runc's own id rule is ^[\w+-\.]+$; we also refuse "." and ".." and a leading "-" (option-like), and cap the length
# (docker/containerd ids are 64 hex chars; names may be longer but not unbounded).
_ID_RE = re.compile(r"^[A-Za-z0-9_+.][A-Za-z0-9_+.\-]{0,254}$")


class HookInputError(QuietError):
    """The hook's stdin or the bundle's config.json cannot be used."""


def valid_container_id(cid: str) -> bool:
    """True for ids safe to use as one path component (no '/', no '..', no NUL, no leading '-')."""
    return bool(_ID_RE.fullmatch(cid)) and cid not in (".", "..")


@dataclass(frozen=True, slots=True)
class OciState:
    """The runtime-spec state a hook reads on stdin. pid None = absent; 0 or 1 are kept (crun/runc in-container)."""

    id: str
    status: str
    pid: int | None
    bundle: str | None
    root: str | None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OciConfig:
    """The parts of config.json we use."""

    root_path: str | None
    annotations: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None


def _obj(text: str, what: str) -> dict[str, Any]:
    if not text.strip():
        raise HookInputError(f"{what} is empty")
    try:
        data = json.loads(text)
    except RecursionError:  # e.g. 100,000 nested arrays: a clear error, not a crash
        raise HookInputError(f"{what} is nested too deeply to be parsed") from None
    except ValueError as exc:
        raise HookInputError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HookInputError(f"{what} is not a JSON object")
    return data


def _annotations(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items() if isinstance(v, (str, int, float, bool))}


def parse_state(text: str) -> OciState:
    """Parse the hook's stdin; raises HookInputError (empty, broken, no id, bad pid type)."""
    data = _obj(text, "OCI state on stdin")
    cid = data.get("id")
    if not isinstance(cid, str) or not cid:
        raise HookInputError("OCI state has no container id")
    pid_raw = data.get("pid")
    if pid_raw is None:
        pid = None
    elif isinstance(pid_raw, int) and not isinstance(pid_raw, bool) and pid_raw >= 0:
        pid = pid_raw
    else:
        raise HookInputError(f"OCI state of {cid!r} has a bad pid {pid_raw!r}")
    bundle = data.get("bundle") or data.get("bundlePath")
    root = data.get("root")
    return OciState(
        id=cid,
        status=str(data.get("status") or ""),
        pid=pid,
        bundle=bundle if isinstance(bundle, str) and bundle else None,
        root=root if isinstance(root, str) and root else None,
        annotations=_annotations(data.get("annotations")),
    )


def parse_config(text: str) -> OciConfig:
    """Parse config.json; raises HookInputError when it is not a JSON object."""
    data = _obj(text, "config.json")
    root = data.get("root")
    root_path = root.get("path") if isinstance(root, dict) else None
    hostname = data.get("hostname")
    return OciConfig(
        root_path=root_path if isinstance(root_path, str) and root_path else None,
        annotations=_annotations(data.get("annotations")),
        hostname=hostname if isinstance(hostname, str) else None,
    )


def resolve_rootfs(state: OciState, config: OciConfig | None) -> str:
    """The container's rootfs as an absolute, normalised path in the runtime's mount namespace.

    Order (toolkit.md §6.8): absolute `root` (iSulad) > config.json root.path (runc, podman; joined to the bundle when
    relative) > relative `root` joined to the bundle (crun). Raises HookInputError when none applies.
    """
    if state.root and posixpath.isabs(state.root):
        return posixpath.normpath(state.root)
    bundle = state.bundle
    if bundle is not None and not posixpath.isabs(bundle):
        raise HookInputError(f"bundle path {bundle!r} of {state.id!r} is not absolute")
    if config is not None and config.root_path:
        if posixpath.isabs(config.root_path):
            return posixpath.normpath(config.root_path)
        if bundle:
            return posixpath.normpath(posixpath.join(bundle, config.root_path))
    if state.root and bundle:
        return posixpath.normpath(posixpath.join(bundle, state.root))
    raise HookInputError(f"cannot find the rootfs of {state.id!r}: no absolute root, no config.json root.path")


def container_name(annotations: dict[str, str]) -> str | None:
    """A human name from well-known annotations (Kubernetes CRI, nerdctl, podman, our own), if any."""
    for key in ("io.lxcfs.name", "io.kubernetes.cri.container-name", "io.kubernetes.container.name",
                "nerdctl/name", "io.podman.annotations.name", "org.openeuler.isulad.name"):
        if annotations.get(key):
            return annotations[key]
    return None
