# Stage 2 of the xlb test guest (PID 1, bash, in the host's filesystem under a tmpfs overlay).
# xtask (vm.rs) prepends the variables below and appends one `run_test` line per test binary.
#   XLB_TMPFS        directories that get a fresh tmpfs (/tmp, /run, ...)
#   XLB_MODULES_DIR  the extracted kernel's lib/modules/<version> on the host
#   XLB_LOAD         modules the labs need, loaded up front (request_module covers the rest)
#   XLB_TEST_TIMEOUT seconds one test binary may run
# Markers on ttyS1, one a line: "@@xlb up <uptime>", "@@xlb start <name>",
# "@@xlb end <name> <exit code> <seconds>", "@@xlb note <text>", "@@xlb done".
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 3>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo 2>/dev/null
note() { echo "@@xlb note $*" >&3; }
shutdown() {
    echo "@@xlb done" >&3
    exec 3>&- # closing the tty waits until its output has drained
    /bin/busybox poweroff -f 2>/dev/null
    echo o > /proc/sysrq-trigger
    sleep 60
}
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
for d in $XLB_TMPFS; do mkdir -p "$d" && mount -t tmpfs -o mode=1777 tmpfs "$d" || note "cannot mount tmpfs on $d"; done
mkdir -p /run/netns /run/lock
mount -t bpf bpf /sys/fs/bpf || note "cannot mount bpffs"
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
kv=$(uname -r)
# modprobe (and the kernel's request_module, which runs /sbin/modprobe) find the guest kernel's
# modules at their usual place.
mkdir -p "/lib/modules/$kv" && mount --bind "/.xlb-host$XLB_MODULES_DIR" "/lib/modules/$kv" || note "cannot bind the modules"
echo /sbin/modprobe > /proc/sys/kernel/modprobe
note "modules: loading at $(cut -d' ' -f1 /proc/uptime) s of uptime"
for m in $XLB_LOAD; do modprobe -q "$m" || note "module $m not loaded"; done
ip link set lo up
hostname "xlb-$kv" 2>/dev/null
ulimit -l unlimited
ulimit -n 65536
echo "@@xlb up $(cut -d' ' -f1 /proc/uptime)" >&3

# run_test NAME DIR BINARY ARGS...: one test binary, run as cargo would (cwd = its package).
run_test() {
    local name=$1 dir=$2 bin=$3
    shift 3
    echo "@@xlb start $name" >&3
    local t0=$SECONDS
    (cd "$dir" && exec timeout -k 10 "$XLB_TEST_TIMEOUT" "$bin" "$@") >&3 2>&1
    local rc=$?
    echo "@@xlb end $name $rc $((SECONDS - t0))" >&3
}
