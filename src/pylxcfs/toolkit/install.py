"""`install-hook`: the iSulad hookspec.json, a podman/CRI-O hooks.d (1.0.0) file, or the `hooks` object to merge into
a runc/crun config.json (toolkit.md §1.8, §5.5, §6.8). Files are written atomically, owned by root, never group- or
world-writable (iSulad refuses hooks writable by others)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

DEFAULT_HOOK_LOG = "/var/log/lxcfs-hook.log"
DEFAULT_ANNOTATION = r"^io\.lxcfs\.enable$"


def hook_binary() -> str:
    """Absolute path of lxcfs-hook: next to the running interpreter's scripts, else from PATH."""
    here = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "lxcfs-hook")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("lxcfs-hook")
    return os.path.abspath(found) if found else "/usr/local/bin/lxcfs-hook"


def hook_args(stage: str, log_file: str | None, lxcfs_dir: str | None,
              registry_dir: str | None = None) -> list[str]:
    args = ["lxcfs-hook", "--stage", stage]  # every entry names its stage: the hook never guesses it
    if log_file:
        args += ["--log", log_file]
    if lxcfs_dir:
        args += ["--lxcfs-dir", lxcfs_dir]
    if registry_dir:
        args += ["--registry-dir", registry_dir]
    return args


def render(fmt: str, hook_path: str, log_file: str | None, lxcfs_dir: str | None, always: bool = False,
           timeout_s: int = 10, registry_dir: str | None = None) -> dict[str, Any]:
    if fmt == "isulad":
        # iSulad offers prestart/poststart/poststop only; prestart runs in the runtime's namespaces with the host pid.
        entry = {"path": hook_path, "args": hook_args("prestart", log_file, lxcfs_dir, registry_dir), "env": [],
                 "timeout": timeout_s}
        return {"prestart": [entry], "poststart": [], "poststop": []}
    if fmt == "hooksd":
        when: dict[str, Any] = {"always": True} if always else {"annotations": {DEFAULT_ANNOTATION: "^(1|true)$"}}
        return {"version": "1.0.0",
                "hook": {"path": hook_path, "args": hook_args("createRuntime", log_file, lxcfs_dir, registry_dir),
                         "timeout": timeout_s},
                "when": when, "stages": ["createRuntime"]}
    if fmt == "runc":
        entry = {"path": hook_path, "args": hook_args("createRuntime", log_file, lxcfs_dir, registry_dir),
                 "timeout": timeout_s}
        return {"hooks": {"createRuntime": [entry]}}
    raise ValueError(f"unknown format {fmt!r} (isulad, hooksd, runc)")


def write_atomic(dest: str, text: str, mode: int) -> None:
    directory = os.path.dirname(os.path.abspath(dest)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
