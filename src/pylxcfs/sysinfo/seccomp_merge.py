"""The `linux.seccomp` part of the runc fragment, and its merge into a config.json that may already carry a profile
(Docker's and podman's defaults, or a user's). Pure: dicts in, dicts out.

The merge never weakens the profile and never widens what it allows:
- no profile: ours is used, defaultAction SCMP_ACT_ALLOW with only the notify rule (no restriction added);
  the architectures list names the native ABI and its compat ABIs, so 32-bit binaries keep working;
- a profile that allows sysinfo unconditionally (an SCMP_ACT_ALLOW rule naming it without args, or no rule and an
  allowing defaultAction): sysinfo is taken out of that rule (libseccomp refuses two rules for one syscall) and a
  SCMP_ACT_NOTIFY rule is added; every other rule, defaultAction, defaultErrnoRet, flags and architectures stay;
- a profile that decides sysinfo otherwise (errno, kill, trace, a conditional rule, a defaultAction that denies it,
  a notify rule of its own) or already has a listenerPath (one listener per container): left exactly as it was.
"""

from __future__ import annotations

import copy
import os
from typing import Any

NOTIFY = "SCMP_ACT_NOTIFY"
ALLOWING = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
SYSCALL = "sysinfo"
METADATA = "pylxcfs-sysinfo"

# The native ABI first, then the compat ABIs a 64-bit kernel also runs (Docker's default profile lists the same).
ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def notify_rule() -> dict[str, Any]:
    """The one rule we add."""
    return {"names": [SYSCALL], "action": NOTIFY}


def fragment(listener_path: str, machine: str | None = None) -> dict[str, Any]:
    """`linux.seccomp` for a config without a profile."""
    machine = machine or os.uname().machine
    seccomp: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": listener_path,
                               "listenerMetadata": METADATA, "syscalls": [notify_rule()]}
    if machine in ARCHES:
        seccomp["architectures"] = list(ARCHES[machine])
    return seccomp


def merge(config: dict[str, Any], listener_path: str, machine: str | None = None) -> tuple[dict[str, Any], str]:
    """(new config, what was done). The input is not modified; when nothing is done the same dict comes back."""
    linux = config.get("linux") or {}
    prof = linux.get("seccomp")
    if not prof:
        out = copy.deepcopy(config)
        out.setdefault("linux", {})["seccomp"] = fragment(listener_path, machine)
        return out, "added a profile with the sysinfo notify rule"
    if not isinstance(prof, dict):
        return config, "unchanged: linux.seccomp is not an object"
    if prof.get("listenerPath"):
        if prof["listenerPath"] == listener_path:
            return config, "unchanged: the profile already notifies this agent"
        return config, "unchanged: the profile has another listenerPath (one listener per container)"
    rules = prof.get("syscalls") or []
    naming = [r for r in rules if isinstance(r, dict) and SYSCALL in (r.get("names") or [])]
    for r in naming:
        if r.get("action") not in ALLOWING or r.get("args"):
            return config, f"unchanged: the profile decides sysinfo itself ({r.get('action')})"
    if not naming and prof.get("defaultAction") not in ALLOWING:
        return config, f"unchanged: the profile denies sysinfo (defaultAction {prof.get('defaultAction')})"
    out = copy.deepcopy(config)
    p = out["linux"]["seccomp"]
    kept = []
    for r in p.get("syscalls") or []:
        if isinstance(r, dict) and SYSCALL in (r.get("names") or []):
            r = dict(r, names=[n for n in r["names"] if n != SYSCALL])
            if not r["names"]:
                continue
        kept.append(r)
    p["syscalls"] = [*kept, notify_rule()]
    p["listenerPath"] = listener_path
    p.setdefault("listenerMetadata", METADATA)
    return out, "added the sysinfo notify rule to the existing profile"
