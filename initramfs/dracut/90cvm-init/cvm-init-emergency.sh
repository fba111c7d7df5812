#!/bin/sh
# dracut hook of the cvm-init module, installed as emergency/00-cvm-init.sh
# and shutdown-emergency/00-cvm-init.sh. dracut sources the hooks of these
# two directories just before it would open a shell (dracut-lib.sh
# _emergency_shell and emergency_shell, dracut-emergency.sh) and in die():
# at boot (rd.break, rd.shell, a failed root) and, which matters more, in
# the shutdown initramfs (99shutdown's /shutdown, with rd.break=pre-shutdown
# or rd.break=shutdown), where the real root and its dm-crypt mappings may
# still be around. In a cvm-init image the console belongs to the host, so
# power off instead. See docs/initrd-hardening.md.
#
# Sourced, not executed: do not return.
echo "cvm-init: refusing the dracut emergency shell; powering off" >/dev/console 2>/dev/null
echo "<2>cvm-init: refusing the dracut emergency shell; powering off" >/dev/kmsg 2>/dev/null
sync
poweroff -f
echo o >/proc/sysrq-trigger
while :; do
    sleep 3600
done
