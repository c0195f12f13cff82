#!/bin/busybox sh
# Stage 1 of the xlb test guest: /init of a tiny busybox initramfs. It mounts the host's root
# filesystem (shared over virtiofs; the Debian cloud kernel has no 9p) read-only, lays a tmpfs
# overlay over it so tests can write anywhere, and switches to it to run stage 2 from the host's
# disk. Markers on the second serial port (ttyS1) are read by xtask (vm.rs).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
    echo "@@xlb error stage1: $*" > /dev/ttyS1
    poweroff -f
}
stage2=
for w in $(cat /proc/cmdline); do
    case "$w" in xlb.stage2=*) stage2=${w#xlb.stage2=} ;; esac
done
[ -n "$stage2" ] || fail "no xlb.stage2= on the kernel command line"
# Modules this kernel does not have built in (virtio_pci, virtiofs, overlay), in load order.
for m in /modules/*.ko; do
    [ -e "$m" ] || continue
    insmod "$m" || fail "cannot load $m"
done
mount -t virtiofs -o ro hostroot /mnt/host || fail "cannot mount the host's root (virtiofs)"
mount -t tmpfs -o mode=0755 tmpfs /mnt/rw || fail "cannot mount tmpfs"
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot ||
    fail "cannot mount the overlay root"
# The raw host view stays reachable at /.xlb-host (stage 2 and the kernel modules are read from
# there, as tmpfs mounts in the guest may hide their paths).
mkdir -p /newroot/.xlb-host
mount --move /mnt/host /newroot/.xlb-host || fail "cannot move the host mount"
[ -f "/newroot/.xlb-host$stage2" ] || fail "stage 2 $stage2 is not on the host's filesystem"
umount /proc /sys /dev
exec switch_root /newroot /bin/bash "/.xlb-host$stage2"
