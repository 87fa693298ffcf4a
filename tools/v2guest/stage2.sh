#!/run/v2guest/busybox sh
# pylxcfs v2 guest, stage 2: PID 1 in the assembled root.  fds 3, 4 and 5 are the virtio-serial ports the host
# reads as the job's stdout, its stderr and its exit status.  Runs the job once, reports, powers off: the guest
# is thrown away, so there is nothing to shut down cleanly (sync only flushes the scratch disks' caches).
B=/run/v2guest/busybox
$B hostname v2guest
$B ip link set lo up 2>/dev/null
read -r up _ </proc/uptime
echo "v2guest: job starts at guest uptime ${up} s" >&4
$B sh /run/v2guest/job.sh </dev/null >&3 2>&4 3>&- 4>&- 5>&-
rc=$?
read -r up _ </proc/uptime
echo "v2guest: job ended (exit ${rc}) at guest uptime ${up} s" >&4
echo "$rc" >&5
$B sync
$B poweroff -f
