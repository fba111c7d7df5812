#!/bin/bash
# Runs an initramfs generator (dracut, mkinitramfs) against the VM bench's
# unpacked Debian kernel and a test config, without changing the host:
#
#   initrd-sandbox.sh SCRATCH KERNEL_ROOT CONFIG_DIR -- COMMAND [ARG...]
#
# SCRATCH      an empty directory for the overlays' upper and work dirs and
#              the generator's temporary files ($TMPDIR points there)
# KERNEL_ROOT  the `dpkg-deb -x` root of a linux-image package (boot/config-*,
#              lib/modules/*), as vm-bench's kernel cache holds it
# CONFIG_DIR   its files become /etc/cvm-init/* (config.toml, the broker CA);
#              `none`: no /etc/cvm-init at all (an unconfigured machine)
#
# COMMAND runs as root in a private mount namespace in which /etc and
# /usr/lib are overlays whose writes land in SCRATCH, /etc/cvm-init is
# CONFIG_DIR, /usr/lib/modules/VERSION is the unpacked kernel's and /boot is
# a tmpfs with its config-VERSION (mkinitramfs reads it). The packages'
# hooks and modules (/usr/share/initramfs-tools, /usr/lib/dracut) are the
# host's: that is what is being tested. Everything vanishes with the
# namespace; the host's /etc, /boot and /usr/lib are never written.
set -euo pipefail

if [[ ${CVM_INITRD_SANDBOX:-} != 1 ]]; then
    CVM_INITRD_SANDBOX=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

usage() {
    echo "usage: $0 SCRATCH KERNEL_ROOT CONFIG_DIR -- COMMAND [ARG...]" >&2
    exit 2
}
[[ $# -ge 5 && $4 == -- ]] || usage
scratch=$(realpath "$1")
kernel_root=$(realpath "$2")
config_dir=$3
shift 4

[[ -d $kernel_root/lib/modules ]] || {
    echo "initrd-sandbox: no lib/modules in $kernel_root" >&2
    exit 1
}
if [[ $config_dir != none ]]; then
    config_dir=$(realpath "$config_dir")
    [[ -f $config_dir/config.toml ]] || {
        echo "initrd-sandbox: no config.toml in $config_dir" >&2
        exit 1
    }
fi

overlay() {
    local target=$1 name=$2
    mkdir -p "$scratch/$name/upper" "$scratch/$name/work"
    mount -t overlay "sandbox-$name" \
        -o "lowerdir=$target,upperdir=$scratch/$name/upper,workdir=$scratch/$name/work" "$target"
}

overlay /etc etc
rm -rf /etc/cvm-init
if [[ $config_dir != none ]]; then
    install -d -m 0755 /etc/cvm-init
    find "$config_dir" -maxdepth 1 -type f -exec install -m 0644 -t /etc/cvm-init {} +
fi

overlay /usr/lib usr-lib
for dir in "$kernel_root"/lib/modules/*/; do
    version=$(basename "$dir")
    mkdir -p "/usr/lib/modules/$version"
    mount --bind -o ro "$dir" "/usr/lib/modules/$version"
done

mount -t tmpfs -o mode=0755 sandbox-boot /boot
for config in "$kernel_root"/boot/config-*; do
    [[ -e $config ]] && cp "$config" /boot/
done

mkdir -p "$scratch/tmp"
export TMPDIR=$scratch/tmp
"$@"
