# Stage 2, PID 1 in the VM's root (the host's userland): mount what a booted Debian has, with the unified
# cgroup v2 hierarchy only, refuse to go on unless /sys/fs/cgroup is cgroup2, run the host's command in the
# leaf group /sys/fs/cgroup/tests, write its exit code and facts to the results folder, and end the VM.
B=/run/vm/busybox
R=/run/vm/results
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

finish() {
    echo "$1" >$R/rc
    $B sync
    $B poweroff -f
}

$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
$B mkdir -p /dev/pts /dev/shm /dev/mqueue
$B mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$B ln -sf /proc/self/fd /dev/fd
$B ln -sf /proc/self/fd/0 /dev/stdin
$B ln -sf /proc/self/fd/1 /dev/stdout
$B ln -sf /proc/self/fd/2 /dev/stderr
for dir in /dev/shm /tmp /var/tmp /var/lib/containers /run/containers /run/lock; do
    $B mkdir -p $dir
    $B mount -t tmpfs -o mode=1777 tmpfs $dir
done
$B mount --make-rshared /  # as systemd does: container engines expect shared propagation
$B hostname cgroup2-vm
$B ip link set lo up

# The grader's groups go below the group its process is in; the root cgroup hands memory, pids and cpu down.
echo "+cpu +memory +pids +io" >/sys/fs/cgroup/cgroup.subtree_control
$B mkdir /sys/fs/cgroup/tests

{
    echo "kernel=$(uname -r)"
    echo "cgroup_fs=$(/usr/bin/stat -fc %T /sys/fs/cgroup)"
    echo "cgroup_magic=0x$($B stat -fc %t /sys/fs/cgroup)"
    echo "cgroup_mounts=$(grep cgroup /proc/mounts | tr '\n' ';')"
    echo "root_subtree_control=$(cat /sys/fs/cgroup/cgroup.subtree_control)"
    echo "tests_controllers=$(cat /sys/fs/cgroup/tests/cgroup.controllers)"
    echo "v1_hierarchies=$(grep -c ' cgroup ' /proc/mounts)"
    echo "cpus=$(nproc)"
    echo "memory_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
    echo "boot_seconds=$(cut -d' ' -f1 /proc/uptime)"
} >$R/facts

# By magic number (CGROUP2_SUPER_MAGIC): busybox's stat has no name for it, and this shell prefers its applets.
if [ "$($B stat -fc %t /sys/fs/cgroup)" != 63677270 ]; then
    echo "vm-stage2: /sys/fs/cgroup is not cgroup2, refusing to run the command" | $B tee -a $R/output.log
    finish 125
fi

# user-mode Linux's hostfs keeps a host descriptor open for every host file the guest has opened and still caches;
# a long run (the hostile corpus: every sandbox's imports) passes the host's open-file limit (20,000 here, which
# root may not raise in a container), and the guest then fails with EMFILE though it has 20 files open itself.
# Dropping the clean caches now and then lets those descriptors go; on a 9p (KVM) guest it costs little.
( while :; do $B sleep 5; echo 2 >/proc/sys/vm/drop_caches; done ) 2>/dev/null &

# Run the command in the leaf group; keep its output for the host and show it on the console as it comes.
(
    $B sh -c 'echo $$ >/sys/fs/cgroup/tests/cgroup.procs && exec env -i PATH="$PATH" HOME=/root LANG=C.UTF-8 \
        TERM=dumb /bin/bash /run/vm/results/command.sh' 2>&1
    echo $? >$R/command-rc
) | $B tee $R/output.log >/dev/console
echo "end_seconds=$(cut -d' ' -f1 /proc/uptime)" >>$R/facts
finish "$(cat $R/command-rc 2>/dev/null || echo 126)"
