#!/usr/bin/env python3
"""Run one command inside a throw-away QEMU guest whose kernel runs a PURE cgroup v2 hierarchy.

Role: test infrastructure only (never imported by pylxcfs). This machine kind is hybrid (v1 controllers plus an
empty cgroup2), and its /dev/kvm is PVM, which cannot boot a stock kernel; so the only way to exercise pylxcfs
on a real pure-v2 kernel is a guest under QEMU's software emulation (TCG). The guest:

* boots Debian's own generic kernel (the `-cloud` flavour lacks 9p), fetched with `apt-get download` and
  cached under <repo>/.cache/v2guest (the uncompressed vmlinux is booted directly through its PVH entry: the
  bzImage's real-mode stub and in-guest xz decompression cost seconds under emulation);
* boots with `cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1`, so every controller is on cgroup2;
* sees the host's "/" read-only over 9p (with a tmpfs overlay for writes), so the host's interpreter, the
  project's venv and the repository are at the same paths and the venv's shebangs work unchanged;
* gets a few blank virtio disks (/dev/vda, /dev/vdb, ...) so io.stat has devices and swap can be enabled;
* returns the command's stdout, stderr and exit status over three virtio-serial ports.

Exit status: the command's own; 124 when --timeout expired (QEMU is killed); 125 when the guest ended without
reporting a status (the console tail is printed); 126 when setup failed (with a message saying why).

Needs root (apt, 9p export of "/"), the Debian packages qemu-system-x86, busybox-static and dpkg (Makefile's
APT_TEST), and a reachable Debian mirror the first time (the cache is empty on a fresh clone).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_CACHE = REPO / ".cache" / "v2guest"

# Modules the guest loads, in the order their dependencies allow (computed from each module's modinfo).
WANTED_MODULES = ("virtio_pci", "virtio_console", "virtio_blk", "9pnet_virtio", "9p", "fuse", "overlay")
# Where in the kernel package those modules (and their dependencies) live; only these are extracted, about
# 2 MB out of the package's ~400 MB.
MODULE_DIRS = (
    "kernel/drivers/virtio/",
    "kernel/drivers/char/virtio_console.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/net/9p/",
    "kernel/fs/9p/",
    "kernel/fs/netfs/",
    "kernel/fs/fscache/",
    "kernel/fs/fuse/",
    "kernel/fs/overlayfs/",
)
# The guest's environment is built from scratch (the host's may name things that do not exist in the guest);
# these few are copied from the caller when set.
PASSED_ENV = ("CI", "LANG", "LC_ALL", "TZ", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

EXIT_TIMEOUT = 124
EXIT_NO_STATUS = 125
EXIT_SETUP = 126


class SetupError(Exception):
    """Anything that prevents the guest from being prepared or started; the message says what to fix."""


def log(msg: str) -> None:
    """Runner messages go to stderr, prefixed, so they are easy to tell from the guest's output."""
    print(f"v2guest: {msg}", file=sys.stderr, flush=True)


def run_quiet(cmd: list[str], cwd: Path | None = None, timeout: float = 600) -> None:
    """Run a setup command; show its output only when it fails (apt is chatty)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise SetupError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")


# --------------------------------------------------------------------------------------------- kernel cache


@dataclass(frozen=True)
class Kernel:
    """A kernel prepared in the cache: the image QEMU boots and the modules in load order."""

    release: str  # e.g. 6.1.0-56-amd64
    image: Path  # uncompressed vmlinux (PVH boot) or, if that could not be extracted, the bzImage
    modules: tuple[Path, ...]  # in load order


def kernel_package() -> str | None:
    """The versioned package behind Debian's linux-image-amd64 metapackage, per the local apt lists."""
    proc = subprocess.run(
        ["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL, timeout=120,
    )
    m = re.search(r"^\s*Depends:\s*(linux-image-[0-9]\S*-amd64)\s*$", proc.stdout, re.MULTILINE)
    return m.group(1) if m else None


def download_kernel(dl: Path) -> Path:
    """Fetch the generic kernel .deb into `dl`; refresh the apt lists once if they are stale or missing."""
    # APT::Sandbox::User=root: as root, apt otherwise drops to the _apt user, which cannot write into our cache.
    download = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download"]
    pkg = kernel_package()
    try:
        if pkg is None:
            raise SetupError("linux-image-amd64 is unknown to apt")
        run_quiet([*download, pkg], cwd=dl)
    except SetupError as first:
        log(f"{first}; running apt-get update and retrying")
        run_quiet(["apt-get", "-q", "update"])
        pkg = kernel_package()
        if pkg is None:
            raise SetupError("cannot resolve the kernel package behind linux-image-amd64") from None
        run_quiet([*download, pkg], cwd=dl)
    debs = sorted(dl.glob("linux-image-*.deb"))
    if not debs:
        raise SetupError(f"apt-get download {pkg} left no .deb in {dl}")
    return debs[0]


_MODULE_PATH = re.compile(r"^\./(?:usr/)?lib/modules/([^/]+)/(.+)$")


def extract_kernel(deb: Path, dest: Path) -> str:
    """Stream the package's data tarball and keep only the kernel image, modules.builtin and MODULE_DIRS."""
    release = ""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                target: Path | None = None
                if member.name.startswith("./boot/vmlinuz-"):
                    target = dest / "vmlinuz"
                else:
                    m = _MODULE_PATH.match(member.name)
                    if m:
                        release, rel = m.group(1), m.group(2)
                        if rel == "modules.builtin":
                            target = dest / "modules.builtin"
                        elif rel.endswith((".ko", ".ko.xz")) and rel.startswith(MODULE_DIRS):
                            target = dest / "ko" / Path(rel).name
                if target is None:
                    continue
                src = tar.extractfile(member)
                assert src is not None
                target.parent.mkdir(parents=True, exist_ok=True)
                data = src.read()
                if target.name.endswith(".ko.xz"):
                    data, target = lzma.decompress(data), target.with_name(target.name[: -len(".xz")])
                target.write_bytes(data)
    finally:
        proc.stdout.close()
        if proc.wait(timeout=60) != 0:
            raise SetupError(f"dpkg-deb --fsys-tarfile {deb} failed")
    if not release or not (dest / "vmlinuz").is_file():
        raise SetupError(f"{deb} holds no kernel image or modules")
    return release


def vmlinux_from_bzimage(bzimage: Path, out: Path) -> bool:
    """Unpack the xz payload of a bzImage into an ELF vmlinux; False if the image is not xz-compressed.

    QEMU boots an ELF vmlinux through its PVH note (x86 direct boot), skipping the real-mode setup and the
    decompressor, which under TCG emulation costs about 2.5 s per boot.
    """
    data = bzimage.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        return False
    # The decompressor stops at the end of the first xz stream; whatever follows (padding, trailer) is ignored.
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    except lzma.LZMAError:
        return False
    if not elf.startswith(b"\x7fELF"):
        return False
    out.write_bytes(elf)
    return True


def module_name(path: Path) -> str:
    """Kernel module names use underscores whatever the file name uses."""
    return path.name.removesuffix(".ko").replace("-", "_")


def module_depends(path: Path) -> list[str]:
    """The `depends=` entry of a module's .modinfo section (what `modinfo -F depends` prints)."""
    data = path.read_bytes()
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", data)
    if not m or not m.group(1):
        return []
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d]


def load_order(ko_dir: Path, builtin_file: Path) -> list[Path]:
    """WANTED_MODULES and their dependencies, dependencies first; built-in dependencies are skipped."""
    available = {module_name(p): p for p in ko_dir.glob("*.ko")}
    builtin = {module_name(Path(line.strip())) for line in builtin_file.read_text().splitlines() if line.strip()}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name in chain:
            raise SetupError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        path = available.get(name)
        if path is None:
            raise SetupError(f"module {name} (needed by {' -> '.join(chain) or 'the guest'}) is not in the package")
        for dep in module_depends(path):
            visit(dep, (*chain, name))
        seen.add(name)
        order.append(path)

    for wanted in WANTED_MODULES:
        visit(wanted, ())
    return order


def prepare_kernel(cache: Path) -> Kernel:
    """Return the cached kernel, downloading and extracting it first if the cache does not hold one."""
    kdir = cache / "kernel"
    meta = kdir / "meta.json"
    if not meta.is_file():
        started = time.monotonic()
        shutil.rmtree(kdir, ignore_errors=True)
        staging = cache / "kernel.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "dl").mkdir(parents=True)
        deb = download_kernel(staging / "dl")
        release = extract_kernel(deb, staging)
        image = "vmlinuz"
        if vmlinux_from_bzimage(staging / "vmlinuz", staging / "vmlinux"):
            image = "vmlinux"
            (staging / "vmlinuz").unlink()
        order = load_order(staging / "ko", staging / "modules.builtin")
        shutil.rmtree(staging / "dl")
        (staging / "meta.json").write_text(json.dumps({
            "package": deb.name, "release": release, "image": image, "modules": [p.name for p in order],
        }, indent=1))
        staging.rename(kdir)
        log(f"kernel {deb.name} fetched and unpacked in {time.monotonic() - started:.1f} s")
    info = json.loads(meta.read_text())
    return Kernel(
        release=info["release"], image=kdir / info["image"],
        modules=tuple(kdir / "ko" / name for name in info["modules"]),
    )


# ------------------------------------------------------------------------------------------------ initramfs


def is_static_elf(path: Path) -> bool:
    """True for an x86-64 ELF executable without a PT_INTERP program header (no dynamic loader needed)."""
    with path.open("rb") as f:
        head = f.read(64)
        if len(head) < 64 or not head.startswith(b"\x7fELF\x02"):  # ELFCLASS64
            return False
        phoff = int.from_bytes(head[32:40], "little")
        phentsize = int.from_bytes(head[54:56], "little")
        phnum = int.from_bytes(head[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(
        int.from_bytes(table[i * phentsize : i * phentsize + 4], "little") != pt_interp for i in range(phnum)
    )


def static_busybox() -> Path:
    """The guest's only userland before switch_root must not need a dynamic loader."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file() and is_static_elf(path):
            return path
    raise SetupError("no static busybox found: install the Debian package busybox-static")


class Cpio:
    """A minimal writer of the "newc" cpio format, the one the kernel unpacks as an initramfs."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def _add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        header = "070701" + "".join(f"{v:08x}" for v in fields)
        self.ino += 1
        blob = header.encode() + name.encode() + b"\x00"
        blob += b"\x00" * (-len(blob) % 4)
        self.parts.append(blob + data + b"\x00" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._add(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._add(name, 0o100000 | mode, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._add(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._add("TRAILER!!!", 0)
        return b"".join(self.parts)


def prepare_initramfs(cache: Path, kernel: Kernel) -> Path:
    """Build (or reuse) the initramfs: static busybox, the two stage scripts and the modules in load order."""
    busybox = static_busybox()
    pieces = [busybox.read_bytes(), (HERE / "init.sh").read_bytes(), (HERE / "stage2.sh").read_bytes()]
    pieces += [p.read_bytes() for p in kernel.modules]
    digest = hashlib.sha256(b"\x00".join(pieces)).hexdigest()[:16]
    out = cache / f"initrd-{digest}.img"
    if out.is_file():
        return out
    archive = Cpio()
    for d in ("bin", "dev", "proc", "sys", "lower", "upper", "newroot", "mods"):
        archive.directory(d)
    # Without /dev/console the kernel starts /init with no stdin/stdout/stderr at all.
    archive.chardev("dev/console", 5, 1)
    archive.file("bin/busybox", pieces[0], 0o755)
    archive.file("init", pieces[1], 0o755)
    archive.file("stage2", pieces[2], 0o755)
    for path, data in zip(kernel.modules, pieces[3:], strict=True):
        archive.file(f"mods/{path.name}", data)
    archive.file("mods/order", "".join(f"{p.name}\n" for p in kernel.modules).encode())
    tmp = out.with_suffix(".tmp")
    # gzip -1: the kernel's inflate is quick even under emulation, and the cache stays small.
    tmp.write_bytes(gzip.compress(archive.finish(), compresslevel=1))
    for old in cache.glob("initrd-*.img"):
        old.unlink()
    tmp.rename(out)
    return out


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """Serialize cache preparation between concurrent runners (parallel CI jobs share one cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------------- boot


def job_script(argv: list[str], cwd: str, env: dict[str, str]) -> str:
    """The shell script stage 2 runs: a clean environment, the working directory, then exec of the command."""
    lines = ["# generated by tools/v2guest/run.py"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    lines.append(f"cd {shlex.quote(cwd)} || exit {EXIT_SETUP}")
    lines.append("exec " + shlex.join(argv))
    return "\n".join(lines) + "\n"


def qemu_command(args: argparse.Namespace, kernel: Kernel, initrd: Path, run: Path, out_fd: int,
                 err_fd: int) -> list[str]:
    """The QEMU command line (see the module docstring for why each piece is there)."""
    accel = os.environ.get("PYLXCFS_V2GUEST_ACCEL", "tcg")
    append = " ".join([
        "console=ttyS0", "loglevel=4", "panic=-1",
        # edd=off and pci=noacpi skip firmware probing that costs seconds under emulation (EDD; the per-link
        # ACPI PCI interrupt routing setup); mitigations=off: the guest is a test box.
        "edd=off", "pci=noacpi", "mitigations=off",
        # The point of the guest: no v1 hierarchy may take a controller, everything is on cgroup2.
        "cgroup_no_v1=all", "systemd.unified_cgroup_hierarchy=1",
        "rdinit=/init", f"v2guest.run={run}",
    ])
    cmd = [
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
        "-no-reboot",
        # The plain "pc" machine: microvm saves nothing measurable and, under TCG, sometimes fails to calibrate
        # the TSC and hangs with no clocksource.
        "-machine", "pc", "-accel", accel, "-cpu", "host" if accel == "kvm" else "max",
        "-smp", str(args.cpus), "-m", str(args.mem),
        "-kernel", str(kernel.image), "-initrd", str(initrd), "-append", append,
        "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=v2guest.root",
        "-device", "virtio-serial-pci",
        # The command's stdout and stderr go straight to ours: QEMU receives our descriptors (-add-fd) rather
        # than reopening a path, so nothing is lost when our stdout is a file opened without O_APPEND.
        "-add-fd", f"fd={out_fd},set=1", "-chardev", "file,id=out,path=/dev/fdset/1,append=on",
        "-device", "virtserialport,chardev=out,name=v2guest.out",
        "-add-fd", f"fd={err_fd},set=2", "-chardev", "file,id=err,path=/dev/fdset/2,append=on",
        "-device", "virtserialport,chardev=err,name=v2guest.err",
        "-chardev", f"file,id=rc,path={run / 'rc'}", "-device", "virtserialport,chardev=rc,name=v2guest.rc",
        "-device", "virtio-rng-pci",
        "-serial", f"file:{run / 'console.log'}",
    ]
    for i, size_mb in enumerate(args.disk_mb):
        disk = run / f"disk{i}.img"
        with disk.open("wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        cmd += ["-drive", f"file={disk},if=virtio,format=raw,cache=unsafe"]
    return cmd


class Interrupted(Exception):
    """SIGTERM/SIGINT/SIGHUP reached the runner: stop QEMU and leave."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def console_tail(run: Path, lines: int = 40) -> str:
    path = run / "console.log"
    if not path.is_file():
        return "(no console output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def boot(args: argparse.Namespace, kernel: Kernel, initrd: Path) -> int:
    """Boot the guest once, run the command, return its exit status (or one of the EXIT_* codes)."""
    env = {"PATH": GUEST_PATH, "HOME": "/root", "PYLXCFS_V2GUEST": "1"}
    env.update({k: os.environ[k] for k in PASSED_ENV if k in os.environ})
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SetupError(f"--env wants KEY=VALUE, got {item!r}")
        env[key] = value
    with tempfile.TemporaryDirectory(prefix="pylxcfs-v2guest-") as tmp:
        run = Path(tmp)
        (run / "job.sh").write_text(job_script(args.command, args.cwd, env))
        out_fd, err_fd = os.dup(sys.stdout.fileno()), os.dup(sys.stderr.fileno())
        try:
            cmd = qemu_command(args, kernel, initrd, run, out_fd, err_fd)
            if args.verbose:
                log(shlex.join(cmd))
            started = time.monotonic()
            sys.stdout.flush()
            sys.stderr.flush()
            qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, pass_fds=(out_fd, err_fd))
            try:
                qrc = qemu.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                log(f"timed out after {args.timeout:.0f} s; console tail:\n{console_tail(run)}")
                return EXIT_TIMEOUT
            finally:
                if qemu.poll() is None:
                    qemu.kill()
                    qemu.wait()
        finally:
            os.close(out_fd)
            os.close(err_fd)
        elapsed = time.monotonic() - started
        status = (run / "rc").read_bytes().decode(errors="replace").strip() if (run / "rc").is_file() else ""
        if not status.isdigit():
            log(f"guest ended without an exit status (qemu exit {qrc}) after {elapsed:.1f} s; console tail:\n"
                f"{console_tail(run)}")
            return EXIT_NO_STATUS
        if args.verbose:
            log(f"console:\n{console_tail(run, 400)}")
        log(f"guest ran for {elapsed:.1f} s (QEMU start to power-off), command exit status {status}")
        return int(status)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run.py", description="Run COMMAND in a throw-away QEMU guest with a pure cgroup v2 hierarchy.",
        epilog="exit status: the command's; 124 timeout, 125 guest died, 126 setup failed",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds for boot plus command (default 900)")
    parser.add_argument("--cpus", type=int, default=2, help="guest vCPUs (default 2)")
    parser.add_argument("--mem", type=int, default=1024, help="guest RAM in MiB (default 1024)")
    parser.add_argument("--disk-mb", type=int, action="append", default=[],
                        help="add a blank virtio disk of this size (vda, vdb, ... in order); repeatable")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set in the guest")
    parser.add_argument("--cwd", default=os.getcwd(), help="working directory in the guest (default: ours)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("PYLXCFS_V2GUEST_CACHE", DEFAULT_CACHE)))
    parser.add_argument("--prepare-only", action="store_true", help="fill the cache and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the QEMU command and the console")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command (after --)")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command and not args.prepare_only:
        parser.error("no command given")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)
    try:
        if os.geteuid() != 0:
            raise SetupError("must run as root (apt-get, and QEMU exports / over 9p)")
        if shutil.which("qemu-system-x86_64") is None:
            raise SetupError("qemu-system-x86_64 not found: install the Debian package qemu-system-x86")
        started = time.monotonic()
        with locked(args.cache):
            kernel = prepare_kernel(args.cache)
            initrd = prepare_initramfs(args.cache, kernel)
        log(f"kernel {kernel.release} and initramfs ready in {time.monotonic() - started:.1f} s ({args.cache})")
        if args.prepare_only:
            return 0
        return boot(args, kernel, initrd)
    except SetupError as e:
        log(f"setup failed: {e}")
        return EXIT_SETUP
    except Interrupted as e:
        log(f"interrupted by signal {e.signum}")
        return 128 + e.signum


if __name__ == "__main__":
    sys.exit(main())
