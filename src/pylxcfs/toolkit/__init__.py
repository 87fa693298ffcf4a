"""The toolkit (isulad-lxcfs-toolkit / lxcfs-tools) and the OCI hook (lxcfs-hook): discovery of containers, the
hook's registry, id resolution, the daemon probe, and the remount/umount orchestration on top of pylxcfs.ct."""
