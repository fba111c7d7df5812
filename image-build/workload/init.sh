#!/bin/sh
# /sbin/init of the demo workload's root image (busybox sh as PID 1 after
# cvm-init's switch_root). It expects what cvm-init hands over:
#   - the encrypted data volume mounted at /data;
#   - the delivered TLS key and certificate at
#     /run/cvm-init/tls/{key,cert}.pem (a tmpfs moved from the initramfs);
#   - eth0 configured.
# It prints what cvm-init did with the volume (/run/cvm-init/volumes/data.json),
# reads /data/hello.txt back if it exists, else writes it (and syncs);
# then serves HTTPS on port 8443 with that key (openssl s_server -www) and
# stays up. Console markers: "WORKLOAD: started at <uptime> s",
# "WORKLOAD: timing <boot-timing.json>", "WORKLOAD: env <names>",
# "WORKLOAD: volume <action>", "WORKLOAD: read <text>"
# or "WORKLOAD: wrote <text>", "WORKLOAD: serving https on 8443", and
# "WORKLOAD: FAIL <why>" (then it powers off).
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
TLS=/run/cvm-init/tls

fail() {
    echo "WORKLOAD: FAIL $*"
    sync
    poweroff -f
}

[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
# The root may be mounted read-only.
grep -q ' /tmp ' /proc/mounts || mount -t tmpfs -o mode=1777 tmpfs /tmp
echo "WORKLOAD: started at $(cut -d' ' -f1 /proc/uptime) s"
# cvm-init's boot timeline (no secrets), one line, for the benchmark.
timing=/run/cvm-init/boot-timing.json
[ -f "$timing" ] && echo "WORKLOAD: timing $(cat "$timing")"
# The environment cvm-init handed over (names only): nothing the host put
# on the kernel command line.
echo "WORKLOAD: env $(env | cut -d= -f1 | sort | tr '\n' ' ')"

grep -q ' /data ' /proc/mounts || fail "the data volume is not mounted at /data"
status=/run/cvm-init/volumes/data.json
if [ -f "$status" ]; then
    echo "WORKLOAD: volume $(sed -n 's/.*"action": *"\([a-z]*\)".*/\1/p' "$status")"
else
    echo "WORKLOAD: volume none"
fi
if [ -f /data/hello.txt ]; then
    echo "WORKLOAD: read $(cat /data/hello.txt)"
else
    text="hello-$(cat /proc/sys/kernel/random/uuid)"
    echo "$text" >/data/hello.txt || fail "cannot write /data/hello.txt"
    sync
    echo "WORKLOAD: wrote $text"
fi

if [ ! -f "$TLS/cert.pem" ] || [ ! -f "$TLS/key.pem" ]; then
    fail "no TLS key and certificate in $TLS"
fi
openssl s_server -accept 8443 -cert "$TLS/cert.pem" -key "$TLS/key.pem" -www \
    </dev/null >/tmp/s_server.log 2>&1 &
i=0
until netstat -ltn | grep -q ':8443 '; do
    i=$((i + 1))
    [ "$i" -gt 100 ] && fail "openssl s_server did not listen: $(cat /tmp/s_server.log)"
    sleep 0.1
done
echo "WORKLOAD: serving https on 8443 at $(cut -d" " -f1 /proc/uptime) s"

# Unlock benchmark, only when asked (cvm_bench=1) and given a spare disk:
# `cryptsetup open` of a default (argon2id) keyslot against one like
# cvm-init's (PBKDF2, 1000 iterations), formatted here so both are
# calibrated on this (emulated) machine.
bench_open() {
    label=$1
    shift
    cryptsetup luksFormat --batch-mode --type luks2 "$@" \
        --key-file /tmp/bench.key /dev/vdc || fail "bench: luksFormat $label"
    t0=$(cut -d' ' -f1 /proc/uptime)
    cryptsetup open --key-file /tmp/bench.key /dev/vdc bench || fail "bench: open $label"
    t1=$(cut -d' ' -f1 /proc/uptime)
    cryptsetup close bench
    echo "BENCH: $label open $(awk "BEGIN { printf \"%d\", ($t1 - $t0) * 1000 }") ms"
}
if grep -q 'cvm_bench=1' /proc/cmdline && [ -b /dev/vdc ]; then
    head -c 64 /dev/urandom >/tmp/bench.key
    bench_open argon2id-default
    bench_open pbkdf2-1000 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 4096
    rm -f /tmp/bench.key
    echo "BENCH: done"
fi

# PID 1 must not exit; reap children now and then.
while :; do
    sleep 3600 &
    wait
done
