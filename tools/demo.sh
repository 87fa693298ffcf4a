#!/usr/bin/env bash
# `make demo`: the seed's usage example, end to end, on runc (no image registry needed).
# Starts pylxcfs on a temporary mount point, runs a busybox container limited to 1 GiB and CPUs 0-1 with
# lxcfs-hook in its config.json (createRuntime), and shows `free -m`, /proc/cpuinfo and the lxcfs mounts as
# the container sees them. DEMO_CPUS (default 0-1) and DEMO_MEMORY_BYTES (default 1 GiB) change the limits. Everything it creates (daemon, container, cgroup, mounts, files) is removed on exit.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=$REPO/.venv/bin
T=$(mktemp -d /tmp/pylxcfs-demo.XXXXXX)
CID=pylxcfs-demo-$$
CG=pylxcfs-demo-$$
DAEMON=
cleanup() {
    runc --root "$T/runc" delete -f "$CID" >/dev/null 2>&1 || true
    [ -n "$DAEMON" ] && kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    mountpoint -q "$T/lxcfs" && umount -l "$T/lxcfs" || true
    for c in /sys/fs/cgroup/*/"$CG" /sys/fs/cgroup/unified/"$CG"; do [ -d "$c" ] && rmdir "$c" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

"$BIN/pylxcfs" --foreground --pidfile "$T/pylxcfs.pid" "$T/lxcfs" 2>"$T/daemon.log" &
DAEMON=$!
for _ in $(seq 100); do mountpoint -q "$T/lxcfs" && break; sleep 0.05; done
mountpoint -q "$T/lxcfs" || { cat "$T/daemon.log"; exit 1; }

# A busybox rootfs, plus procps `free` (busybox's free asks sysinfo(2), which no FUSE file can change).
R=$T/bundle/rootfs
mkdir -p "$R"/{bin,proc,sys,dev,etc,tmp,usr/bin}
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
cp /usr/bin/free "$R/usr/bin/free"
for lib in $(ldd /usr/bin/free | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; done

cd "$T/bundle"
runc spec
jq --arg mem "${DEMO_MEMORY_BYTES:-1073741824}" --arg cpus "${DEMO_CPUS:-0-1}" --arg hook "$BIN/lxcfs-hook" --arg dir "$T/lxcfs" --arg reg "$T/registry" --arg cg "/$CG" '
  .process.terminal = false | .process.args = ["sleep", "3600"] | .root.readonly = false
  | .linux.cgroupsPath = $cg
  | .linux.resources.memory.limit = ($mem | tonumber)
  | .linux.resources.cpu.cpus = $cpus | .linux.resources.cpu.mems = "0"
  | .hooks.createRuntime = [{path: $hook, args: ["lxcfs-hook", "--lxcfs-dir", $dir, "--registry-dir", $reg]}]
' config.json > config.new && mv config.new config.json
runc --root "$T/runc" run -d "$CID" >/dev/null 2>&1 </dev/null

show() { echo "# $1"; runc --root "$T/runc" exec "$CID" sh -c "$1"; echo; }
# /usr/bin/free is procps (it reads /proc/meminfo); busybox sh would otherwise run its own applet,
# which asks sysinfo(2), a syscall no FUSE file can virtualize.
show '/usr/bin/free -m'
show 'grep -E "^(processor|physical id|siblings|core id|cpu cores)" /proc/cpuinfo'
show 'cat /sys/devices/system/cpu/online'
show 'mount | grep lxcfs'
echo "(host: $(grep -c ^processor /proc/cpuinfo) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB)"
