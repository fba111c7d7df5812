#!/bin/bash
# Install cvm-init into an image and make its next boot use it. Run as root
# inside the image (Packer's shell provisioner, or a chroot/VM in tests):
#
#   provision.sh DEB CONFIG_DIR [initrd|booted]
#
# DEB         the cvm-init .deb (cargo deb)
# CONFIG_DIR  a directory with config.toml and what it references (the
#             pinned broker CA); copied to /etc/cvm-init. This is the
#             measured config: it must come from the image build, never
#             from instance metadata.
# mode        initrd (default): cvm-init runs in the initramfs, before the
#             root is handed over (initramfs-tools: volume mountpoints below
#             /root; dracut/systemd initrd: below /sysroot), and the
#             initramfs is regenerated here.
#             booted: cvm-init-secrets.service runs in the booted system
#             (mountpoints are real paths such as /data); the initramfs is
#             left alone.
set -euo pipefail

usage() {
    echo "usage: $0 DEB CONFIG_DIR [initrd|booted]" >&2
    exit 2
}
[[ $# -ge 2 && $# -le 3 ]] || usage
deb=$1
config_dir=$2
mode=${3:-initrd}
case "$mode" in initrd | booted) ;; *) usage ;; esac
[[ -f $deb ]] || { echo "provision.sh: no package at $deb" >&2; exit 1; }
[[ -f $config_dir/config.toml ]] || { echo "provision.sh: no config.toml in $config_dir" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
# apt resolves the package's dependencies (libcryptsetup12, libblkid1); a
# path with a slash makes apt treat the argument as a local file.
apt-get install -y --no-install-recommends "$(realpath "$deb")"

install -d -m 0755 /etc/cvm-init
find "$config_dir" -maxdepth 1 -type f -exec install -m 0644 -t /etc/cvm-init {} +
# Refuse to produce an image whose config cvm-init would reject at boot.
cvm-init --config /etc/cvm-init/config.toml check-config

case "$mode" in
    booted)
        systemctl enable cvm-init-secrets.service
        ;;
    initrd)
        # Whichever initramfs generator the image uses; both only pick
        # cvm-init up now that /etc/cvm-init/config.toml exists.
        if command -v dracut >/dev/null; then
            dracut --force --regenerate-all
            list() { lsinitrd "$1"; }
        elif command -v update-initramfs >/dev/null; then
            update-initramfs -u -k all
            list() { lsinitramfs "$1"; }
        else
            echo "provision.sh: neither dracut nor initramfs-tools is installed" >&2
            exit 1
        fi
        found=0
        for img in /boot/initrd.img-* /boot/initramfs-*.img; do
            [[ -e $img ]] || continue
            found=1
            # The listing first: with pipefail, `list | grep -q` fails
            # when grep stops reading at the first match.
            listing=$(list "$img")
            if ! grep -q 'usr/bin/cvm-init$' <<<"$listing"; then
                echo "provision.sh: cvm-init is missing from $img" >&2
                exit 1
            fi
            echo "provision.sh: $img carries cvm-init"
        done
        [[ $found == 1 ]] || { echo "provision.sh: no initramfs found in /boot" >&2; exit 1; }
        ;;
esac
