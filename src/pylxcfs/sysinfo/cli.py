"""`pylxcfs-sysinfo`: the sysinfo agent's small command line.

- `agent --socket PATH [--config JSON] [--detach]`: run the agent (`pylxcfs --sysinfo` starts it for you);
- `ping (--socket PATH | --lxcfs-dir DIR)`: print the agent's counters; exit 0 if it answers, 1 if not;
- `merge --config BUNDLE/config.json (--socket PATH | --lxcfs-dir DIR)`: if the agent answers, add the sysinfo
  notify rule to that config (seccomp_merge.py; atomically, in place); if it does not, leave the config alone.
  Exit 0 either way (contrib/engines/lxcfs-runc runs it on `create`: a container always starts); 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from pylxcfs.sysinfo import client, seccomp_merge


def _socket(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    return client.socket_for(args.lxcfs_dir)


def _write_atomic(path: str, data: str) -> None:
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cmd_merge(args: argparse.Namespace) -> int:
    sock = _socket(args)
    try:
        with open(args.config) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        print(f"pylxcfs-sysinfo: {args.config}: {e}", file=sys.stderr)
        return 2
    if not isinstance(config, dict):
        print(f"pylxcfs-sysinfo: {args.config}: not a JSON object", file=sys.stderr)
        return 2
    if client.ping(sock) is None:
        print(f"pylxcfs-sysinfo: no agent answers on {sock}: {args.config} unchanged (sysinfo shows the host)")
        return 0
    new, what = seccomp_merge.merge(config, sock)
    if new is not config:
        _write_atomic(args.config, json.dumps(new, indent=1))
    print(f"pylxcfs-sysinfo: {args.config}: {what}")
    return 0


def cmd_ping(args: argparse.Namespace) -> int:
    pong = client.ping(_socket(args))
    if pong is None:
        print("no agent", file=sys.stderr)
        return 1
    print(" ".join(f"{k}={v}" for k, v in pong.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agent"]:
        from pylxcfs.sysinfo.agent import main as agent_main

        return agent_main(argv[1:])
    ap = argparse.ArgumentParser(prog="pylxcfs-sysinfo", description=__doc__.split("\n\n")[0],
                                 epilog="`agent --help` for the agent's options")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("agent", help="run the agent")
    for name in ("ping", "merge"):
        p = sub.add_parser(name)
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--socket", help="the agent's socket (the OCI listenerPath)")
        g.add_argument("--lxcfs-dir", help="the daemon's mount point (the socket is DIR.sysinfo.sock)")
        if name == "merge":
            p.add_argument("--config", required=True, help="the bundle's config.json, edited in place")
    args = ap.parse_args(argv)
    try:
        return cmd_merge(args) if args.cmd == "merge" else cmd_ping(args)
    except ValueError as e:
        print(f"pylxcfs-sysinfo: {e}", file=sys.stderr)
        return 2
