"""The Debian package (`make deb`): built from this checkout, its file list and control data checked with
dpkg-deb, then installed, run, verified by systemd-analyze and purged in a clean Debian 12 root
(packaging/deb/test-in-root.sh: an mmdebstrap root cached in build/deb-root; the first run builds it)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.root, pytest.mark.slow]

COMMANDS = ("pylxcfs", "isulad-lxcfs-toolkit", "lxcfs-tools", "lxcfs-hook")


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("deb")
    r = subprocess.run(["bash", str(REPO / "packaging/deb/build.sh"), str(out)], capture_output=True, text=True,
                       timeout=900, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parent == out
    yield path


def _listing(deb: Path) -> dict[str, str]:
    """path -> dpkg-deb's mode column (and '-> target' for symlinks)."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    files = {}
    for line in out.splitlines():
        parts = line.split(None, 5)
        name = parts[5]
        target = ""
        if " -> " in name:
            name, target = name.split(" -> ", 1)
        files[name.removeprefix(".")] = parts[0] + (f" -> {target}" if target else "")
    return files


def test_package_contents(deb: Path) -> None:
    files = _listing(deb)
    for cmd in COMMANDS:
        assert files[f"/usr/bin/{cmd}"] == f"lrwxrwxrwx -> ../lib/pylxcfs/bin/{cmd}"
        assert files[f"/usr/lib/pylxcfs/bin/{cmd}"].startswith("-rwxr-xr-x")
    assert files["/usr/bin/lxcfs-runc"].startswith("-rwxr-xr-x")
    assert files["/usr/lib/pylxcfs/bin/python3"] == "lrwxrwxrwx -> /usr/bin/python3"  # Debian's interpreter
    for f in ("/lib/systemd/system/pylxcfs.service", "/var/lib/isulad/hooks/hookspec.json",
              "/usr/share/containers/oci/hooks.d/pylxcfs.json", "/etc/pylxcfs/runc-hooks.json",
              "/usr/share/doc/pylxcfs/README.md", "/usr/share/doc/pylxcfs/copyright",
              "/usr/share/doc/pylxcfs/README.Debian", "/usr/share/doc/pylxcfs/changelog.Debian.gz"):
        assert files.get(f, "").startswith("-rw-r--r--"), (f, files.get(f))
    assert any(f.endswith("/site-packages/pylxcfs/cli.py") for f in files)
    assert any("/site-packages/prometheus_client/" in f for f in files)
    assert any("/site-packages/mfusepy" in f for f in files)
    # Never anything of Debian's lxcfs package, nor compiled caches (postinst compiles, prerm removes them).
    assert not [f for f in files if f in ("/usr/bin/lxcfs", "/lib/systemd/system/lxcfs.service")]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]

    def field(name: str) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                              check=True).stdout.strip()

    assert field("Package") == "pylxcfs" and field("Architecture") == "all"
    depends = field("Depends")
    for dep in ("python3 (>= 3.11)", "python3 (<< 3.12)", "fuse3", "libfuse3-3", "jq", "procps"):
        assert dep in depends, depends
    assert "lxcfs" not in field("Conflicts")  # coexists with Debian's lxcfs (README.Debian)


def test_package_files_name_installed_paths(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    unit = (tmp_path / "lib/systemd/system/pylxcfs.service").read_text()
    assert "/usr/local" not in unit and "ExecStart=/usr/bin/pylxcfs " in unit
    for rel in ("var/lib/isulad/hooks/hookspec.json", "usr/share/containers/oci/hooks.d/pylxcfs.json",
                "etc/pylxcfs/runc-hooks.json"):
        assert '"/usr/bin/lxcfs-hook"' in (tmp_path / rel).read_text(), rel
    shebang = (tmp_path / "usr/lib/pylxcfs/bin/pylxcfs").read_text().splitlines()[0]
    assert shebang == "#!/usr/lib/pylxcfs/bin/python3" or shebang == "#!/usr/lib/pylxcfs/bin/python", shebang
    leaked = subprocess.run(["grep", "-rlI", str(deb.parent), str(tmp_path)], capture_output=True, text=True)
    assert leaked.stdout == "", f"the build directory is named in: {leaked.stdout}"


@pytest.mark.e2e
def test_install_run_verify_purge_in_a_clean_debian_root(deb: Path) -> None:
    r = subprocess.run(["bash", str(REPO / "packaging/deb/test-in-root.sh"), str(deb)], capture_output=True,
                       text=True, timeout=1500, check=False)
    assert r.returncode == 0, (r.stdout[-4000:], r.stderr[-4000:])
    for line in ("pylxcfs status (no daemon): exit 1, not-running: ok", "pylxcfs.service enabled: ok",
                 "systemd-analyze verify pylxcfs.service lxcfs.service", "purge leaves nothing behind: ok",
                 "== all checks passed"):
        assert line in r.stdout, r.stdout[-3000:]
