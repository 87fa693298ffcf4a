#!/bin/bash
# Install the package into a clean Debian 12 root and check it: dpkg installs it next to Debian's lxcfs, the
# commands run, `systemd-analyze verify` accepts the units, and a purge leaves no file behind.
#
# usage: packaging/deb/test-in-root.sh DEB [CACHEDIR]
# The base root (mmdebstrap of bookworm with the package's dependencies, systemd and Debian's lxcfs) is made
# once and cached as CACHEDIR/bookworm-base-<hash>.tar (default build/deb-root); delete it to rebuild. Each run
# unpacks a fresh copy into a temp dir and works inside a private mount namespace (unshare), so nothing is
# mounted on the host and the copy is removed at the end.
set -euo pipefail
deb=$(readlink -f "$1")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${2:-$repo/build/deb-root}
suite=${DEB_SUITE:-bookworm}
mirror=${DEB_MIRROR:-http://deb.debian.org/debian}
# The package's Depends (control.in), systemd for systemd-analyze, Debian's lxcfs to show they coexist.
pkgs=python3,fuse3,libfuse3-3,jq,procps,systemd,lxcfs
base="$cache/$suite-base-$(echo "$pkgs" | md5sum | cut -c1-8).tar"   # a new package list makes a new root

command -v mmdebstrap >/dev/null || { echo "test-in-root.sh: mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 1; }
mkdir -p "$cache"
if [ ! -s "$base" ]; then
	echo "== building the base root $base (once)"
	mmdebstrap --quiet --variant=apt --include="$pkgs" "$suite" "$cache/.$suite-base.partial.tar" "$mirror"
	mv "$cache/.$suite-base.partial.tar" "$base"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pylxcfs-debroot.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
root="$work/root"
mkdir "$root"
tar -C "$root" -xf "$base"
cp "$deb" "$root/tmp/pylxcfs.deb"

# Everything below runs in a private mount namespace: /proc for the root is mounted there only.
unshare --mount --propagation private --fork -- bash -euo pipefail -c '
root=$1
mount -t proc proc "$root/proc"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
snapshot() {
	# Every path on the root filesystem except dpkg/apt bookkeeping, logs of dpkg itself and scratch space.
	in_root find / -xdev \( -path /proc -o -path /tmp -o -path /var/cache -o -path /var/lib/dpkg \
		-o -path /var/lib/apt -o -path /var/log -o -path /run \) -prune -o -print | sort
}
snapshot >"$root/../before.txt"
echo "== dpkg -i (Debian lxcfs $(in_root dpkg-query -W -f="\${Version}" lxcfs) is installed too)"
in_root dpkg -i /tmp/pylxcfs.deb
in_root dpkg-query -W -f="\${Status}\n" pylxcfs lxcfs
echo "== the commands run"
for c in pylxcfs isulad-lxcfs-toolkit lxcfs-tools lxcfs-hook; do
	in_root "$c" --help >/dev/null
	echo "$c --help: ok"
done
in_root pylxcfs --version
in_root isulad-lxcfs-toolkit install-hook --format runc | in_root jq -e ".hooks.createRuntime[0].path == \"/usr/bin/lxcfs-hook\"" >/dev/null
out=$(in_root env LXCFS_REAL_RUNC=echo lxcfs-runc --root /x state ct1)
[ "$out" = "--root /x state ct1" ] || { echo "lxcfs-runc did not pass its arguments through: $out" >&2; exit 1; }
echo "lxcfs-runc passes through to the real runtime: ok"
set +e
in_root pylxcfs status --json /var/lib/lxc/lxcfs >"$root/../status.json"
rc=$?
set -e
[ "$rc" = 1 ] && in_root jq -e ".health == \"not-running\"" <"$root/../status.json" >/dev/null
echo "pylxcfs status (no daemon): exit 1, not-running: ok"
in_root jq -e ".hook.path == \"/usr/bin/lxcfs-hook\"" /usr/share/containers/oci/hooks.d/pylxcfs.json >/dev/null
in_root jq -e ".prestart[0].path == \"/usr/bin/lxcfs-hook\"" /var/lib/isulad/hooks/hookspec.json >/dev/null
echo "hook files name /usr/bin/lxcfs-hook: ok"
[ -L "$root/etc/systemd/system/multi-user.target.wants/pylxcfs.service" ]
echo "pylxcfs.service enabled: ok"
echo "== systemd-analyze verify"
in_root systemd-analyze verify --man=no /lib/systemd/system/pylxcfs.service /lib/systemd/system/lxcfs.service
echo "systemd-analyze verify pylxcfs.service lxcfs.service (no man pages in the root): ok"
echo "== dpkg --purge"
in_root dpkg --purge pylxcfs
snapshot >"$root/../after.txt"
if ! diff -u "$root/../before.txt" "$root/../after.txt"; then
	echo "purge left the files above behind" >&2
	exit 1
fi
echo "purge leaves nothing behind: ok"
' bash "$root"
echo "== all checks passed in a clean $suite root"
