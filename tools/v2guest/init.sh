#!/bin/busybox sh
# pylxcfs v2 guest, stage 1: PID 1 inside the initramfs (busybox only).
#
# Its job is to turn the empty initramfs into a usable root and get out of the way:
#   1. load the virtio / 9p / fuse / overlay modules (Debian builds them as modules, =m),
#   2. open the three virtio-serial ports the host listens on (stdout, stderr, exit status),
#   3. build the real root: the host's "/" over 9p, read-only, under a tmpfs overlay, so the guest runs the
#      host's own Python, venv and repository at the same paths while every write stays in guest RAM,
#   4. mount /proc, /sys, a pure cgroup2 hierarchy (the kernel was booted with cgroup_no_v1=all), /dev, /run,
#   5. switch_root into it.  A chroot is not enough: a daemon that pivots or inspects /proc/1/mountinfo must
#      see a real mount at "/" with PID 1 on it, as on any booted system.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "v2guest-init: $*" >/dev/kmsg; }
# Before the exit-status port is open the only way to report is the console; the host then says
# "guest ended without an exit status" and prints the console tail.
give_up() {
    say "$*"
    { [ -e /proc/self/fd/5 ] && echo 126 >&5; } 2>/dev/null
    sync
    poweroff -f
}

while read -r ko; do
    insmod "/mods/$ko" || say "insmod $ko failed"
done </mods/order

RUN=
for arg in $(cat /proc/cmdline); do
    case "$arg" in v2guest.run=*) RUN=${arg#v2guest.run=} ;; esac
done
[ -n "$RUN" ] || give_up "no v2guest.run= on the kernel command line"

# No udev here, so no /dev/virtio-ports/<name> links: map port names to /dev/vportNpM through sysfs.
OUT= ERR= RC=
for port in /sys/class/virtio-ports/*; do
    name=$(cat "$port/name" 2>/dev/null) || continue
    case "$name" in
        v2guest.out) OUT=/dev/${port##*/} ;;
        v2guest.err) ERR=/dev/${port##*/} ;;
        v2guest.rc) RC=/dev/${port##*/} ;;
    esac
done
[ -n "$OUT" ] && [ -n "$ERR" ] && [ -n "$RC" ] || give_up "virtio-serial ports not found"
# A virtio-serial port can be opened only once (a second open gives EBUSY): open each one here, keep the fds
# across switch_root and let every later process inherit them.
exec 3>"$OUT" 4>"$ERR" 5>"$RC" 2>&4

mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose v2guest.root /lower \
    || give_up "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755 upper /upper
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work root /newroot \
    || give_up "cannot assemble the overlay root"

N=/newroot
mount -t proc proc $N/proc
mount -t sysfs sysfs $N/sys
# The same options systemd uses for its cgroup2 mount.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 $N/sys/fs/cgroup || give_up "cannot mount cgroup2"
mount -t fusectl fusectl $N/sys/fs/fuse/connections 2>/dev/null
mount -t devtmpfs devtmpfs $N/dev
mkdir -p $N/dev/pts $N/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts $N/dev/pts
ln -sf pts/ptmx $N/dev/ptmx
ln -sf /proc/self/fd $N/dev/fd
mount -t tmpfs -o mode=1777 shm $N/dev/shm
mount -t tmpfs -o mode=0755 run $N/run
# /tmp stays the host's (under the overlay, so writes land in guest RAM): the repository itself may live
# there, as in a CI checkout under /tmp.
mkdir -p $N/run/v2guest
cp /bin/busybox /stage2 "/lower$RUN/job.sh" $N/run/v2guest/ || give_up "cannot stage the job"
umount /proc /sys 2>/dev/null
exec switch_root $N /run/v2guest/stage2
