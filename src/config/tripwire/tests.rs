#![allow(clippy::unwrap_used)]

use super::*;

fn names(cmdline: &str) -> Vec<String> {
    scan(cmdline).into_iter().map(|t| t.word).collect()
}

fn assert_clean(cmdline: &str) {
    let tripped = scan(cmdline);
    assert!(tripped.is_empty(), "{cmdline}: {tripped:?}");
}

/// A word that trips `entry`, bare or with a value as its kind allows.
fn samples(entry: &Forbidden) -> Vec<String> {
    match entry.kind {
        Match::Word => vec![entry.name.to_owned()],
        Match::Key | Match::Switch => vec![
            entry.name.to_owned(),
            format!("{}=x", entry.name),
            format!("{}=1", entry.name),
        ],
        Match::Prefix => vec![format!("{}x", entry.name)],
    }
}

#[test]
fn every_entry_is_found_bare_or_with_value() {
    for entry in FORBIDDEN {
        for word in samples(entry) {
            let line = format!("ro quiet {word} console=ttyS0");
            let tripped = scan(&line);
            assert_eq!(tripped.len(), 1, "{line}: {tripped:?}");
            assert_eq!(tripped[0].word, word);
            assert_eq!(tripped[0].read_by, entry.read_by);
            assert_eq!(tripped[0].effect, entry.effect);
            // Alone, at the end, and after a newline as in /proc/cmdline.
            assert_eq!(scan(&word).len(), 1, "{word}");
            assert_eq!(scan(&format!("a {word}\n")).len(), 1, "{word}");
        }
    }
}

#[test]
fn every_entry_is_found_quoted() {
    for entry in FORBIDDEN {
        for word in samples(entry) {
            let line = format!("ro \"{word}\" quiet");
            assert_eq!(names(&line), vec![word.clone()], "{line}");
            let line = format!("ro '{word}' quiet");
            assert_eq!(names(&line), vec![word.clone()], "{line}");
        }
    }
}

#[test]
fn words_keep_their_kind() {
    for entry in FORBIDDEN {
        match entry.kind {
            // `single=1` and `1=x` never reach init as a runlevel.
            Match::Word => {
                assert_clean(&format!("{}=1", entry.name));
                assert_clean(&format!("{}x", entry.name));
                assert_clean(&format!("x{}", entry.name));
            }
            // No longer name matches: rd.breakfast is not rd.break.
            Match::Key | Match::Switch => {
                assert_clean(&format!("{}fast", entry.name));
                assert_clean(&format!("{}fast=1", entry.name));
                assert_clean(&format!("x{}", entry.name));
            }
            Match::Prefix => {
                assert_clean(&format!("x{}", entry.name));
            }
        }
    }
}

#[test]
fn baseline_from_the_issue_is_covered() {
    for word in [
        "rd.break",
        "rd.break=pre-mount",
        "rd.break=cmdline",
        "rd.shell",
        "rd.emergency",
        "rd.emergency=reboot",
        "rd.debug",
        "rd.systemd.unit=emergency.target",
        "systemd.unit=rescue.target",
        "systemd.unit=multi-user.target",
        "rd.systemd.mask=cvm-init.service",
        "systemd.mask=cvm-init.service",
        "systemd.debug_shell",
        "rd.systemd.debug_shell",
        "init=/bin/sh",
        "rdinit=/bin/sh",
        "break",
        "break=premount",
        "single",
        "emergency",
        "rescue",
        "s",
        "S",
        "1",
        "-b",
    ] {
        assert_eq!(names(&format!("ro {word} quiet")), vec![word], "{word}");
    }
}

#[test]
fn look_alikes_are_not_found() {
    for line in [
        "rd.breakfast",
        "rd.breaker=1",
        "xrd.break",
        "single_quote=1",
        "singles",
        "s=1",
        "S3",
        "10",
        "-bx",
        "systemd.unit_dir=x",
        "systemd.units=x",
        "systemd.runner=1",
        "systemd.run_success_action=reboot",
        "systemd.run_failure_action=poweroff",
        "systemd.default_debug_tty=ttyS0",
        "systemd.debug_shells",
        "rd.shellx",
        "breakpoint=1",
        "debugfs=on",
        "initrd=\\initrd.img",
        "init",
        "rdinit",
        "ignore_loglevel",
        "rd.debugx",
        "panic=-1",
        "rd.shell=0",
        "rd.shell=no",
        "rd.shell=off",
        "rd.debug=0",
        "systemd.debug_shell=0",
        "systemd.debug_shell=no",
        "systemd.debug_shell=false",
        "systemd.debug_shell=FALSE",
        "systemd.debug-shell=off",
        "rd.systemd.debug_shell=0",
        "rd.systemd.debug-shell=n",
        "systemd.crash_shell=0",
        "systemd.confirm_spawn=no",
        "systemd.volatile=no",
        "systemd.condition-first-boot=false",
        "cvm_init.log_level=debug",
        "cvm_init.single",
        "LD_PRELOADX",
        "acpi_osi=\"Windows 1\"",
        "x=\"a rd.break\"",
        "x='a rd.break'",
    ] {
        assert_clean(line);
    }
}

#[test]
fn false_for_dracut_is_not_false_for_every_parser() {
    // dracut's getargbool knows only 0, no and off.
    for word in [
        "rd.shell=false",
        "rd.shell=n",
        "rd.shell=",
        "rd.shell=1",
        "rd.debug=yes",
    ] {
        assert_eq!(names(word), vec![word], "{word}");
    }
    // The old aliases are true with any value.
    for word in ["rdshell=0", "rdinitdebug=0", "rdbreak=0"] {
        assert_eq!(names(word), vec![word], "{word}");
    }
    // systemd.debug_shell=<tty> is a shell on that tty.
    assert_eq!(
        names("systemd.debug_shell=ttyS0"),
        vec!["systemd.debug_shell=ttyS0"]
    );
    assert_eq!(
        names("systemd.confirm_spawn=/dev/ttyS0"),
        vec!["systemd.confirm_spawn=/dev/ttyS0"]
    );
}

#[test]
fn debian_grub_command_line_is_clean() {
    let line = "BOOT_IMAGE=/vmlinuz-6.1.0-28-amd64 root=UUID=0f6a4c2e-59b2-4a3b-9d0e-2f1c5b7e8a91 ro quiet console=ttyS0 cvm_init.log_level=debug\n";
    assert_clean(line);
    let line = "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.1.0-28-amd64 root=/dev/mapper/root ro console=tty0 console=ttyS0,115200n8 earlyprintk=ttyS0 net.ifnames=0 rd.luks.uuid=1234 rd.shell=0 panic=-1 initrd=initrd";
    assert_clean(line);
}

#[test]
fn dash_and_underscore_are_the_same_in_names() {
    for word in [
        "rd.systemd.debug-shell",
        "rd.systemd.debug_shell",
        "systemd.debug-shell",
        "systemd.debug-shell=1",
        "systemd.crash-shell",
        "systemd.confirm-spawn",
        "systemd.set-credential=a:b",
        "systemd.condition-first-boot",
        "systemd.condition_first_boot=yes",
        "systemd.mount-extra=/dev/vdb:/etc",
        "rd.systemd.mount-extra=/dev/vdb:/sysroot/etc",
        "sysrq-always-enabled",
        "real-init=/bin/sh",
    ] {
        assert_eq!(names(word), vec![word], "{word}");
    }
    // Only in the name: a dash in the value changes nothing.
    assert_eq!(scan("rd.shell=o-f-f").len(), 1);
}

#[test]
fn found_in_order_with_the_words_as_given() {
    let line = "root=/dev/vda1 single rd.break=pre-mount quiet init=/bin/bash systemd.run=\"/bin/sh -c x\" 1";
    assert_eq!(
        names(line),
        vec![
            "single",
            "rd.break=pre-mount",
            "init=/bin/bash",
            "systemd.run=/bin/sh -c x",
            "1",
        ]
    );
}

#[test]
fn kernel_splitting() {
    assert_eq!(
        words("a  b\t\"c d\" e=\"f g\" \"h=i j\"\n"),
        vec!["a", "b", "c d", "e=f g", "h=i j"]
    );
    // Quotes in the middle of a word stay; a quote opened there still
    // groups, as in next_arg().
    assert_eq!(words("a\"b c\"d e"), vec!["a\"b c\"d", "e"]);
    // An unterminated quote runs to the end.
    assert_eq!(words("x \"y z"), vec!["x", "y z"]);
    assert_eq!(words(""), Vec::<String>::new());
    assert_eq!(words("   \n"), Vec::<String>::new());
    assert_eq!(words("\""), vec![""]);
    assert_eq!(words("a=\""), vec!["a="]);
    assert_eq!(words("a=\"\""), vec!["a="]);
}

#[test]
fn quoted_values() {
    assert_eq!(
        names("systemd.run=\"/bin/sh -c 'echo hi'\" ro"),
        vec!["systemd.run=/bin/sh -c 'echo hi'"]
    );
    assert_eq!(
        names("systemd.setenv=\"LD_PRELOAD=/x.so\""),
        vec!["systemd.setenv=LD_PRELOAD=/x.so"]
    );
    assert_eq!(names("\"rd.break\""), vec!["rd.break"]);
    assert_eq!(names("rd.break=\"pre-mount\""), vec!["rd.break=pre-mount"]);
    // systemd removes quotes anywhere in a word.
    assert_eq!(names("sys'temd.debug_shell'"), vec!["systemd.debug_shell"]);
    assert_eq!(names("rd.sys\"temd.unit\"=x"), vec!["rd.systemd.unit=x"]);
    // A quoted false value is flagged: the parsers disagree on quotes
    // (dracut reads rd.shell='0' as true).
    assert_eq!(names("rd.shell='0'").len(), 1);
}

#[test]
fn parser_differentials_are_covered() {
    // The kernel and dracut see one word; initramfs-tools splits it and
    // runs init=/bin/sh.
    assert_eq!(names("x=\"a init=/bin/sh b\""), vec!["init=/bin/sh"]);
    // systemd groups on single quotes, the kernel does not: systemd sees
    // `foo "` and then systemd.debug_shell.
    assert_eq!(
        names("'foo \"' systemd.debug_shell '\"'"),
        vec!["systemd.debug_shell"]
    );
    // With backslash escapes, systemd sees `x="` and then the unit.
    assert_eq!(
        names("x=\\\" 'rd.systemd.unit=emergency.target'"),
        vec!["rd.systemd.unit=emergency.target"]
    );
    // The kernel splits on 0xA0, inside a UTF-8 character too.
    assert_eq!(names("x\u{a0}rd.break").len(), 1);
    assert_eq!(names("\u{e0}rd.break").len(), 1);
    assert_eq!(scan_bytes(b"x\xa0rd.break").len(), 1);
    assert_eq!(names("ro\x0bsingle").len(), 1);
    assert_eq!(names("ro\x0csingle\r").len(), 1);
}

#[test]
fn one_parameter_is_reported_once() {
    assert_eq!(scan("rd.break").len(), 1);
    assert_eq!(scan("\"rd.break\"").len(), 1);
    // Twice on the line: two findings.
    assert_eq!(scan("rd.break ro rd.break=mount").len(), 2);
}

#[test]
fn display_names_the_word_reader_and_effect() {
    let t = &scan("ro rd.break")[0];
    assert_eq!(
        t.to_string(),
        format!("`rd.break` (read by {}: {})", t.read_by, t.effect)
    );
    let t = &scan("init=/bin/sh\x1b[2J")[0];
    assert!(t
        .to_string()
        .starts_with("`init=/bin/sh\\u{1b}[2J` (read by "));
}

#[test]
fn table_is_well_formed() {
    for (i, entry) in FORBIDDEN.iter().enumerate() {
        assert!(!entry.name.is_empty());
        assert!(!entry.read_by.is_empty() && !entry.effect.is_empty());
        assert!(!entry.name.contains(char::is_whitespace), "{}", entry.name);
        if entry.kind != Match::Prefix {
            assert!(!entry.name.contains('='), "{}", entry.name);
        }
        for other in &FORBIDDEN[i + 1..] {
            assert_ne!(
                normalise(entry.name),
                normalise(other.name),
                "{}",
                entry.name
            );
        }
    }
}
