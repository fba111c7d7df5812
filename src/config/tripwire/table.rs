//! The parameters the tripwire refuses, each with who reads it and what
//! it does.

use super::{Forbidden, Match};

const DRACUT_BREAK: &str = "dracut 059: modules.d/99base/init.sh, dracut-lib.sh and 98dracut-systemd/dracut-*.sh (getarg rd.break[=hook])";
const DRACUT_SHELL: &str =
    "dracut 059: modules.d/99base/dracut-lib.sh emergency_shell, die (getargbool 1 rd.shell)";
const DRACUT_DEBUG: &str =
    "dracut 059: modules.d/99base/dracut-lib.sh setdebug, check_quiet (getargbool 0 rd.debug)";
const DRACUT_INIT: &str =
    "dracut 059: modules.d/99base/init.sh (non-systemd initrd: real_init=, init=, rd.distroinit=)";
const SYSTEMD_MAIN: &str =
    "systemd 252: PID 1, src/core/main.c parse_proc_cmdline_item (initrd and booted system)";
const SYSTEMD_RUNLEVEL: &str =
    "systemd 252: PID 1, runlevel_to_target() (booted system); sysvinit: argument from the kernel";
const DEBUG_GENERATOR: &str =
    "systemd 252: systemd-debug-generator (rd.* in the initrd, the plain name in the booted system)";
const BREAK_GENERATOR: &str =
    "systemd 258+: systemd-debug-generator breakpoints (rd.* in the initrd, the plain name in the booted system)";
const RUN_GENERATOR: &str =
    "systemd 252: systemd-run-generator (rd.* in the initrd, the plain name in the booted system)";
const MOUNT_EXTRA: &str = "systemd 254+: systemd-fstab-generator";
const SHELL_AT_RESCUE: &str = "starts rescue.target: a root shell on the console";
const SHELL_AT_EMERGENCY: &str = "starts emergency.target: a root shell on the console";
const OTHER_TARGET: &str = "boots a different target than the image's default";

/// Every parameter the tripwire refuses, with who reads it and what it does.
pub const FORBIDDEN: &[Forbidden] = &[
    // dracut
    Forbidden {
        name: "rd.break",
        kind: Match::Key,
        read_by: DRACUT_BREAK,
        effect: "emergency shell at the named hook (bare: before switch_root); also allows the shell on any failure",
    },
    Forbidden {
        name: "rdbreak",
        kind: Match::Key,
        read_by: DRACUT_BREAK,
        effect: "old alias of rd.break: emergency shell at a hook",
    },
    Forbidden {
        name: "rd.shell",
        kind: Match::Switch,
        read_by: DRACUT_SHELL,
        effect: "emergency shell when anything in the initrd fails (dracut's default unless rd.shell=0)",
    },
    Forbidden {
        name: "rdshell",
        kind: Match::Key,
        read_by: DRACUT_SHELL,
        effect: "old alias of rd.shell (getarg -y: any value means yes): emergency shell on failure",
    },
    Forbidden {
        name: "rd.debug",
        kind: Match::Switch,
        read_by: DRACUT_DEBUG,
        effect: "shell trace (set -x) of every dracut hook to the console and journal, values and secrets in variables included",
    },
    Forbidden {
        name: "rdinitdebug",
        kind: Match::Key,
        read_by: DRACUT_DEBUG,
        effect: "old alias of rd.debug (getarg -y: any value means yes): shell trace of every hook",
    },
    Forbidden {
        name: "rdnetdebug",
        kind: Match::Key,
        read_by: "dracut 059: modules.d/99base/dracut-lib.sh setdebug, 35network-manager, 35connman (getarg -y rdnetdebug)",
        effect: "old alias of rd.debug: shell trace of every hook",
    },
    Forbidden {
        name: "rd.emergency",
        kind: Match::Key,
        read_by: "systemd 252: PID 1 runlevel_to_target() in the initrd (bare); dracut 059: modules.d/99base/dracut-lib.sh emergency_shell (getarg rd.emergency)",
        effect: "bare: starts emergency.target in the initrd, a root shell; =reboot|poweroff|halt: changes dracut's failure action",
    },
    Forbidden {
        name: "rd.rescue",
        kind: Match::Key,
        read_by: "systemd 252: PID 1 runlevel_to_target() in the initrd",
        effect: "starts rescue.target in the initrd: a root shell on the console",
    },
    Forbidden {
        name: "rd.cmdline",
        kind: Match::Key,
        read_by: "dracut 059: modules.d/98dracut-systemd/dracut-cmdline-ask.sh, 99base/init.sh (getarg rd.cmdline=ask)",
        effect: "asks on the console for more parameters and keeps them in /etc/cmdline.d, where this scan cannot see them",
    },
    Forbidden {
        name: "real_init",
        kind: Match::Key,
        read_by: DRACUT_INIT,
        effect: "program run as PID 1 of the booted system",
    },
    Forbidden {
        name: "rd.distroinit",
        kind: Match::Key,
        read_by: DRACUT_INIT,
        effect: "program run as PID 1 of the booted system",
    },
    // The kernel, and everything that passes init= on.
    Forbidden {
        name: "init=",
        kind: Match::Prefix,
        read_by: "Linux: init/main.c __setup(\"init=\"); dracut 059: modules.d/99base/init.sh; initramfs-tools: init (init=*); systemd 252: systemctl switch-root",
        effect: "program run as PID 1 of the booted system (or of the root file system when there is no initrd)",
    },
    Forbidden {
        name: "rdinit=",
        kind: Match::Prefix,
        read_by: "Linux: init/main.c __setup(\"rdinit=\")",
        effect: "program run from the initrd instead of /init: neither the initrd's init nor cvm-init runs",
    },
    Forbidden {
        name: "sysrq_always_enabled",
        kind: Match::Prefix,
        read_by: "Linux: drivers/tty/sysrq.c __setup(\"sysrq_always_enabled\")",
        effect: "every SysRq function from the host's console whatever kernel.sysrq says: kill all tasks, dump registers, tasks and memory",
    },
    // initramfs-tools
    Forbidden {
        name: "break",
        kind: Match::Key,
        read_by: "initramfs-tools 0.142: init (break, break=*), scripts/functions maybe_break -> panic",
        effect: "shell in the initramfs at top, modules, premount, mount, mountroot, bottom or init (bare: premount)",
    },
    Forbidden {
        name: "debug",
        kind: Match::Key,
        read_by: "initramfs-tools 0.142: init (debug, debug=*: set -x); also Linux and systemd (log level)",
        effect: "shell trace of the initramfs init and every hook, to /run/initramfs/initramfs.debug or, with netconsole=, the host",
    },
    // systemd PID 1 (main.c reads these with no rd. handling: the plain
    // name works in the initrd too, an rd. form is ignored).
    Forbidden {
        name: "systemd.unit",
        kind: Match::Key,
        read_by: "systemd 252: PID 1, src/core/main.c (booted system)",
        effect: "boots the named unit instead of default.target (e.g. emergency.target; any target counts)",
    },
    Forbidden {
        name: "rd.systemd.unit",
        kind: Match::Key,
        read_by: "systemd 252: PID 1, src/core/main.c (initrd)",
        effect: "starts the named unit instead of initrd.target (e.g. emergency.target)",
    },
    Forbidden {
        name: "systemd.setenv",
        kind: Match::Key,
        read_by: SYSTEMD_MAIN,
        effect: "sets an environment variable for every unit (LD_PRELOAD, SYSTEMD_SULOGIN_FORCE, ...)",
    },
    Forbidden {
        name: "systemd.crash_shell",
        kind: Match::Switch,
        read_by: SYSTEMD_MAIN,
        effect: "root shell on the console when PID 1 crashes",
    },
    Forbidden {
        name: "systemd.confirm_spawn",
        kind: Match::Switch,
        read_by: SYSTEMD_MAIN,
        effect: "asks on the console before each process: the host can skip or fake-fail any unit, cvm-init and hardening included",
    },
    Forbidden {
        name: "systemd.set_credential",
        kind: Match::Key,
        read_by: "systemd 252: PID 1 credential import (src/core/import-creds.c)",
        effect: "system credentials: tmpfiles.extra writes files, passwd.hashed-password.root sets root's password, systemd.extra-unit.* (256+) adds units",
    },
    Forbidden {
        name: "systemd.set_credential_binary",
        kind: Match::Key,
        read_by: "systemd 253+: PID 1 credential import",
        effect: "same as systemd.set_credential, base64 value",
    },
    // Runlevel words (whole words only).
    Forbidden {
        name: "emergency",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: SHELL_AT_EMERGENCY,
    },
    Forbidden {
        name: "-b",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: SHELL_AT_EMERGENCY,
    },
    Forbidden {
        name: "rescue",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: SHELL_AT_RESCUE,
    },
    Forbidden {
        name: "single",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: SHELL_AT_RESCUE,
    },
    Forbidden {
        name: "-s",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: SHELL_AT_RESCUE,
    },
    Forbidden {
        name: "s",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: SHELL_AT_RESCUE,
    },
    Forbidden {
        name: "S",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: SHELL_AT_RESCUE,
    },
    Forbidden {
        name: "1",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: SHELL_AT_RESCUE,
    },
    Forbidden {
        name: "2",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: OTHER_TARGET,
    },
    Forbidden {
        name: "3",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: OTHER_TARGET,
    },
    Forbidden {
        name: "4",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: OTHER_TARGET,
    },
    Forbidden {
        name: "5",
        kind: Match::Word,
        read_by: SYSTEMD_RUNLEVEL,
        effect: OTHER_TARGET,
    },
    // systemd-debug-generator
    Forbidden {
        name: "systemd.mask",
        kind: Match::Key,
        read_by: DEBUG_GENERATOR,
        effect: "masks a unit for this boot (cvm-init, a firewall, ...)",
    },
    Forbidden {
        name: "rd.systemd.mask",
        kind: Match::Key,
        read_by: DEBUG_GENERATOR,
        effect: "masks a unit in the initrd",
    },
    Forbidden {
        name: "systemd.wants",
        kind: Match::Key,
        read_by: DEBUG_GENERATOR,
        effect: "adds any installed unit to the boot (e.g. debug-shell.service)",
    },
    Forbidden {
        name: "rd.systemd.wants",
        kind: Match::Key,
        read_by: DEBUG_GENERATOR,
        effect: "adds any installed unit to the initrd's boot",
    },
    Forbidden {
        name: "systemd.debug_shell",
        kind: Match::Switch,
        read_by: DEBUG_GENERATOR,
        effect: "root shell without password on tty9 or the named tty, from early boot",
    },
    Forbidden {
        name: "rd.systemd.debug_shell",
        kind: Match::Switch,
        read_by: DEBUG_GENERATOR,
        effect: "root shell without password in the initrd, on tty9 or the named tty",
    },
    Forbidden {
        name: "systemd.break",
        kind: Match::Key,
        read_by: BREAK_GENERATOR,
        effect: "shell at a breakpoint (pre-udev, pre-basic)",
    },
    Forbidden {
        name: "rd.systemd.break",
        kind: Match::Key,
        read_by: BREAK_GENERATOR,
        effect: "shell at an initrd breakpoint (bare: pre-switch-root)",
    },
    // systemd-run-generator
    Forbidden {
        name: "systemd.run",
        kind: Match::Key,
        read_by: RUN_GENERATOR,
        effect: "runs the given command line as a system service",
    },
    Forbidden {
        name: "rd.systemd.run",
        kind: Match::Key,
        read_by: RUN_GENERATOR,
        effect: "runs the given command line as a service in the initrd",
    },
    // Other systemd parts
    Forbidden {
        name: "systemd.volatile",
        kind: Match::Switch,
        read_by: "systemd 252: systemd-fstab-generator, systemd-volatile-root.service",
        effect: "root (or /var) on tmpfs or an overlay: the image's /etc, enabled units and state are not used",
    },
    Forbidden {
        name: "systemd.mount_extra",
        kind: Match::Key,
        read_by: MOUNT_EXTRA,
        effect: "mounts a host-named device anywhere, e.g. over /etc or /usr",
    },
    Forbidden {
        name: "rd.systemd.mount_extra",
        kind: Match::Key,
        read_by: MOUNT_EXTRA,
        effect: "mounts a host-named device anywhere in the initrd",
    },
    Forbidden {
        name: "systemd.condition_first_boot",
        kind: Match::Switch,
        read_by: "systemd 252: PID 1 ConditionFirstBoot= override (libsystemd-shared)",
        effect: "runs first-boot units again, systemd-firstboot's console prompts (root password) among them",
    },
];
