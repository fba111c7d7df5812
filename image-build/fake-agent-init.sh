#!/bin/sh
# /init of vm-bench's workload test: a busybox stand-in for cvm-init that
# does, with fixed inputs, what the agent does before handing over, so the
# workload image can be tested on its own:
#   modules from /etc/cvm-init/modules; eth0 10.0.2.15/24 via 10.0.2.2;
#   /dev/vdb = data volume: LUKS2 (formatted with ext4 if blank), key
#   /etc/fake-agent/data.key, mounted at /newroot/data;
#   /dev/vda = workload root (ext4) at /newroot;
#   tmpfs /run/cvm-init with tls/{cert,key}.pem from /etc/fake-agent/tls,
#   moved to /newroot/run/cvm-init; then switch_root to /sbin/init.
# Console markers: "AGENT: formatted", "AGENT: switching root",
# "AGENT: FAIL <why>".
export PATH=/sbin:/usr/sbin:/bin:/usr/bin

fail() {
    echo "AGENT: FAIL $*"
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run/cryptsetup /newroot

while read -r m; do
    insmod "$m" || fail "insmod $m"
done </etc/cvm-init/modules

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

wait_for /dev/vda
wait_for /dev/vdb
key=/etc/fake-agent/data.key
if ! cryptsetup isLuks /dev/vdb; then
    cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 \
        --pbkdf-force-iterations 1000 --sector-size 4096 \
        --key-file "$key" /dev/vdb || fail "luksFormat"
    cryptsetup open --key-file "$key" /dev/vdb data || fail "cryptsetup open"
    mkfs.ext4 -q -b 4096 /dev/mapper/data || fail "mkfs.ext4"
    echo "AGENT: formatted"
else
    cryptsetup open --key-file "$key" /dev/vdb data || fail "cryptsetup open"
fi

mount -t ext4 -o ro /dev/vda /newroot || fail "mount the workload root"
mount -t ext4 /dev/mapper/data /newroot/data || fail "mount the data volume"
mkdir -p /run/cvm-init
mount -t tmpfs -o mode=0700,size=1m tmpfs /run/cvm-init || fail "tmpfs"
mkdir -p /run/cvm-init/tls
cp /etc/fake-agent/tls/cert.pem /etc/fake-agent/tls/key.pem /run/cvm-init/tls/ || fail "copy TLS"
mount --move /run/cvm-init /newroot/run/cvm-init || fail "move /run/cvm-init"
for d in dev proc sys; do
    mount --move "/$d" "/newroot/$d" || fail "move /$d"
done
echo "AGENT: switching root"
exec switch_root /newroot /sbin/init
