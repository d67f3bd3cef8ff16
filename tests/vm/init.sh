#!/bin/busybox sh
# Stage 1, PID 1 of the initramfs: load the kernel modules the VM needs, build the VM's root from the host's
# root (shared read-only) with a tmpfs on top for writes, then hand PID 1 to stage 2 inside that root.
# The host's folders come in over 9p (qemu) or hostfs (user-mode Linux): vm.transport= on the command line.
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "vm-init: $*" >/dev/console
    poweroff -f  # the host reports the missing exit code with the console's last lines
}

for word in $(cat /proc/cmdline); do
    case "$word" in
        vm.transport=*) transport="${word#vm.transport=}" ;;
        vm.results=*) results="${word#vm.results=}" ;;
    esac
done

# share TAG HOSTPATH MOUNTPOINT ro|rw 9P-CACHE: the host folder shared as TAG (9p) or HOSTPATH (hostfs)
share() {
    case "$transport" in
        9p) mount -t 9p -o "$4,trans=virtio,version=9p2000.L,msize=262144,cache=$5" "$1" "$3" ;;
        hostfs) mount -t hostfs -o "$4,$2" hostfs "$3" ;;
        *) false ;;
    esac
}

mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /modules/order); do
    insmod "/modules/$module.ko" || fail "cannot load kernel module $module"
done

mkdir -p /mnt/lower /mnt/rw /newroot
# cache=loose: the host's root does not change under a test run, and Python imports thousands of files.
share hostroot / /mnt/lower ro loose || fail "cannot mount the host's root over '$transport'"
mount -t tmpfs -o mode=0755 tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot \
    || fail "cannot stack the overlay on the host's root"

# /run holds stage 2, a busybox it can rely on, and the host's results folder (writable, uncached).
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot/run/vm/results
share results "$results" /newroot/run/vm/results rw none || fail "cannot mount the results folder"
cp /bin/busybox /stage2.sh /newroot/run/vm/
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /run/vm/busybox sh /run/vm/stage2.sh
