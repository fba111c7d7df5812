#!/bin/bash
# dracut module for cvm-init: attests to the user's key broker in the
# initrd, unlocks or provisions the encrypted volumes below /sysroot and puts
# secrets on /run before switch-root (see systemd/cvm-init.service).
#
# Opt-in: the package installs this module on every machine, but it is only
# part of an initrd once the administrator has written
# /etc/cvm-init/config.toml. Everything under /etc/cvm-init (the config, the
# pinned broker CA) is copied into the initrd, and so is measured with it.
# shellcheck shell=bash
# dracut sources this file and provides inst_*, instmods, $initdir, $moddir
# and $systemdsystemunitdir; the functions are called by dracut, not here.
# shellcheck disable=SC2154

# Files the package ships for this module (see [package.metadata.deb]).
cvm_init_share=/usr/share/cvm-init
cvm_init_config=/etc/cvm-init/config.toml

# Print the value of KEY in [SECTION] of the config (a plain `key = "value"`
# line; enough for url and action, which are plain strings). cvm-init itself
# validates the config; this only picks optional initrd pieces.
cvm_init_toml_get() {
    awk -v want="[$1]" -v key="$2" '
        /^[[:space:]]*\[/ { gsub(/[[:space:]]/, ""); section = $0; next }
        section == want && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
            sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
        }' "$cvm_init_config"
}

# True when the broker is reached over the network (not loopback).
cvm_init_needs_network() {
    local url
    url=$(cvm_init_toml_get broker url)
    case "$url" in
        "") return 1 ;;
        http://127.* | https://127.* | http://localhost[:/]* | https://localhost[:/]* | \
            http://localhost | https://localhost | http://\[::1\]* | https://\[::1\]*) return 1 ;;
        *) return 0 ;;
    esac
}

check() {
    # 255: only when another module or the user asks for it. Unconfigured
    # machines (the package merely installed) get an unchanged initrd.
    [[ -f $cvm_init_config ]] || return 255
    require_binaries /usr/bin/cvm-init || return 1
    return 0
}

depends() {
    # dm: dmsetup and the device-mapper udev rules (55-dm, 95-dm-notify).
    # libcryptsetup activates through libdevmapper, which waits for udev to
    # confirm each new mapping; without those rules in the initrd that wait
    # never ends and the boot hangs after "formatted ... as LUKS2". A
    # host-only initrd of an image without /etc/crypttab would otherwise
    # lack them (dracut's crypt module is not included there).
    local deps="systemd dm"
    # The network stack only for a broker across the network; dracut's
    # "network" picks NetworkManager, systemd-networkd or network-legacy.
    if [[ -f $cvm_init_config ]] && cvm_init_needs_network; then
        deps="$deps network"
    fi
    echo "$deps"
    return 0
}

installkernel() {
    # Best effort (no -c): a kernel without one of these (tdx-guest on an
    # AMD-only build, a built-in driver) still gets an initrd.
    # dm-crypt/dm-integrity: the volumes; virtio: the usual CVM devices;
    # sev-guest/tdx-guest/tsm/configfs: the attestation report;
    # aesni-intel/xts/ecb: aes-xts-plain64 at speed; ext4/xfs: the mkfs'd
    # file systems.
    instmods dm_mod dm_crypt dm_integrity \
        virtio_blk virtio_net virtio_pci virtio_scsi \
        sev-guest tdx-guest tsm configfs \
        aesni_intel xts ecb cryptd \
        ext4 xfs
}

install() {
    # inst_binary resolves the ELF's libraries (libcryptsetup, libblkid,
    # libc). glibc dlopens libgcc_s for unwinding, which ldd does not show.
    inst_binary /usr/bin/cvm-init
    inst_libdir_file "libgcc_s.so.1"

    # The config and everything it references (the pinned CA, relative to
    # the config file).
    local f
    for f in /etc/cvm-init/*; do
        [[ -f $f ]] && inst_simple "$f"
    done

    # First-boot provisioning runs mkfs; only the ones present are copied.
    inst_multiple -o mkfs.ext4 mkfs.xfs

    inst_simple "$systemdsystemunitdir/cvm-init.service"
    if cvm_init_needs_network; then
        inst_simple "$cvm_init_share/network.conf" \
            "$systemdsystemunitdir/cvm-init.service.d/network.conf"
    fi
    # The unit powers off on failure (failure.action = "halt", the default).
    if [[ $(cvm_init_toml_get failure action) == reboot ]]; then
        inst_simple "$cvm_init_share/failure-reboot.conf" \
            "$systemdsystemunitdir/cvm-init.service.d/failure-reboot.conf"
    fi
    # [Install] RequiredBy=initrd-fs.target
    "${SYSTEMCTL:-systemctl}" -q --root "$initdir" enable cvm-init.service

    cvm_init_harden
}

# Units that open a shell on the console (which the host owns) or let the
# host bring in code: masked in the initrd, so that rd.systemd.unit=,
# rd.systemd.wants=, rd.systemd.debug_shell, rd.break, rd.shell and resume=
# reach nothing. A mask in /etc/systemd/system wins over the units dracut
# installs in $systemdsystemunitdir, including those of modules installed
# after this one (98dracut-systemd's emergency.service, rescue.service and
# dracut-emergency.service).
cvm_init_masked_units="emergency.service emergency.target rescue.service \
rescue.target debug-shell.service dracut-emergency.service \
getty@.service serial-getty@.service console-getty.service \
container-getty@.service autovt@.service systemd-hibernate-resume@.service"

# Units that systemd 252 and dracut 059 ship with OnFailure=emergency.target
# (grep OnFailure= /usr/lib/systemd/system /usr/lib/dracut/modules.d), plus
# sysinit.target and basic.target: on failure they power off instead.
# initrd-switch-root.target and .service have drop-ins of their own.
cvm_init_onfailure_units="initrd.target initrd-fs.target initrd-root-fs.target \
initrd-root-device.target initrd-usr-fs.target local-fs.target \
initrd-parse-etc.service initrd-cleanup.service systemd-fsck-root.service \
sysinit.target basic.target"

# No back doors in the initrd (docs/initrd-hardening.md). The drop-ins go to
# /etc/systemd/system, which takes precedence over $systemdsystemunitdir.
cvm_init_harden() {
    local u etc="/etc/systemd/system"
    mkdir -p "$initdir$etc"
    for u in $cvm_init_masked_units; do
        ln -sfn /dev/null "$initdir$etc/$u"
    done

    inst_simple "$cvm_init_share/cvm-init-poweroff.service" \
        "$systemdsystemunitdir/cvm-init-poweroff.service"
    for u in $cvm_init_onfailure_units; do
        inst_simple "$cvm_init_share/initrd-onfailure.conf" \
            "$etc/$u.d/cvm-init.conf"
    done
    # Switch root only after cvm-init succeeded, and never to init= from
    # the command line.
    inst_simple "$cvm_init_share/initrd-switch-root-target.conf" \
        "$etc/initrd-switch-root.target.d/cvm-init.conf"
    inst_simple "$cvm_init_share/initrd-switch-root-service.conf" \
        "$etc/initrd-switch-root.service.d/cvm-init.conf"
    # No freeze when no default target can be queued at all.
    inst_simple "$cvm_init_share/initrd-system.conf" \
        /etc/systemd/system.conf.d/99-cvm-init.conf

    # dracut's shell paths (boot and the shutdown initramfs) run these
    # hooks first: power off there.
    inst_hook emergency 00 "$moddir/cvm-init-emergency.sh"
    inst_hook shutdown-emergency 00 "$moddir/cvm-init-emergency.sh"
}
