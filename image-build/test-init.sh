#!/bin/sh
# /init of vm-bench's smoke test (busybox sh as PID 1). Proves the bench:
# loads the modules listed in /etc/cvm-init/modules in order, brings up
# eth0 on QEMU user networking, fetches http://10.0.2.2:$smoke_port/ping
# from the host, makes a LUKS2 volume on the blank /dev/vda with
# cryptsetup, puts ext4 on it, writes $smoke_secret into a file, prints
# "SMOKE: ok" and powers off. Any failure prints "SMOKE: FAIL <why>".
# Parameters come from the kernel command line: smoke_port=, smoke_secret=.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin

fail() {
    echo "SMOKE: FAIL $*"
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run/cryptsetup /tmp
echo "SMOKE: init started"

port=''
secret=''
read -r cmdline </proc/cmdline
for word in $cmdline; do
    case "$word" in
    smoke_port=*) port=${word#smoke_port=} ;;
    smoke_secret=*) secret=${word#smoke_secret=} ;;
    esac
done
if [ -z "$port" ] || [ -z "$secret" ]; then
    fail "smoke_port or smoke_secret missing from the command line"
fi

while read -r m; do
    insmod "$m" || fail "insmod $m"
done </etc/cvm-init/modules
echo "SMOKE: modules loaded: $(wc -l </etc/cvm-init/modules)"

wait_for() {
    i=0
    while [ ! -e "$1" ]; do
        i=$((i + 1))
        [ "$i" -gt 50 ] && fail "$1 did not appear"
        sleep 0.1
    done
}

wait_for /sys/class/net/eth0
ip link set lo up
ip link set eth0 up || fail "eth0 up"
ip addr add 10.0.2.15/24 dev eth0 || fail "eth0 address"
ip route add default via 10.0.2.2 || fail "default route"
# busybox 1.35 wget segfaults with -T (its own timeout option): use timeout(1).
reply=$(timeout 15 wget -q -O - "http://10.0.2.2:$port/ping") || fail "wget http://10.0.2.2:$port/ping"
echo "SMOKE: http reply $reply"

wait_for /dev/vda
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 \
    --pbkdf-force-iterations 1000 --sector-size 4096 \
    --key-file /etc/smoke.key /dev/vda || fail "luksFormat"
cryptsetup open --key-file /etc/smoke.key /dev/vda smoke || fail "cryptsetup open"
echo "SMOKE: luks opened"
mkfs.ext4 -q -b 4096 /dev/mapper/smoke || fail "mkfs.ext4"
mount -t ext4 /dev/mapper/smoke /mnt || fail "mount"
echo "$secret" >/mnt/hello.txt || fail "write"
[ "$(cat /mnt/hello.txt)" = "$secret" ] || fail "read back"
umount /mnt || fail "umount"
cryptsetup close smoke || fail "cryptsetup close"
sync
echo "SMOKE: ok"
poweroff -f
