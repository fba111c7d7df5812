#![allow(clippy::unwrap_used)]

use super::cmdline::Overrides;
use super::*;

const MINIMAL: &str = r#"
[broker]
url = "https://kbs.example:8080"
ca_cert = "/etc/cvm-init/broker-ca.pem"
"#;

fn err_of(text: &str) -> String {
    Config::from_toml(text).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_safe_defaults() {
    let c = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(c.attester.kind, AttesterKind::Auto);
    assert!(!c.attester.allow_simulated);
    assert_eq!(c.failure.action, FailureAction::Halt);
    assert_eq!(c.broker.key_alg, KeyAlgConfig::EcdhEsA256Kw);
    assert!(!c.broker.insecure_http);
}

#[test]
fn a_typo_is_an_error_naming_the_field() {
    let e = err_of(&format!("{MINIMAL}\n[attester]\nknd = \"snp\"\n"));
    assert!(e.contains("knd"), "{e}");
    let e = err_of(&MINIMAL.replace("ca_cert", "ca_crt"));
    assert!(e.contains("ca_crt"), "{e}");
}

#[test]
fn the_broker_must_be_pinned() {
    let e = err_of("[broker]\nurl = \"https://kbs.example\"\n");
    assert!(
        e.contains("broker.ca_cert") && e.contains("not pinned"),
        "{e}"
    );
    let e = err_of(&format!("{MINIMAL}spki_sha256 = \"{}\"\n", "ab".repeat(32)));
    assert!(e.contains("both"), "{e}");
    let e = err_of("[broker]\nurl = \"https://kbs.example\"\nspki_sha256 = \"abc\"\n");
    assert!(e.contains("64 hex"), "{e}");
}

#[test]
fn plain_http_needs_the_explicit_insecure_flag() {
    let e = err_of("[broker]\nurl = \"http://127.0.0.1:8080\"\n");
    assert!(e.contains("insecure_http"), "{e}");
    Config::from_toml("[broker]\nurl = \"http://127.0.0.1:8080\"\ninsecure_http = true\n").unwrap();
}

#[test]
fn shell_on_failure_only_in_debug_images() {
    let e = err_of(&format!("{MINIMAL}[failure]\naction = \"shell\"\n"));
    assert!(
        e.contains("failure.action") && e.contains("debug_image"),
        "{e}"
    );
    Config::from_toml(&format!(
        "{MINIMAL}[failure]\naction = \"shell\"\ndebug_image = true\n"
    ))
    .unwrap();
}

#[test]
fn resource_paths_follow_the_kbs_rule() {
    for bad in ["a/b", "a/b/c/d", "a/.b/c", "a/b c/d", "/a/b"] {
        let text =
            format!("{MINIMAL}[[secret]]\nresource = \"{bad}\"\npath = \"/run/cvm-init/x\"\n");
        let e = err_of(&text);
        assert!(e.contains("resource path"), "{bad}: {e}");
    }
}

#[test]
fn secrets_only_to_run_with_private_modes() {
    let base = format!("{MINIMAL}[[secret]]\nresource = \"default/tls/key\"\n");
    let e = err_of(&format!("{base}path = \"/etc/key.pem\"\n"));
    assert!(e.contains("secret[0].path"), "{e}");
    let e = err_of(&format!("{base}path = \"/run/../etc/key.pem\"\n"));
    assert!(e.contains("secret[0].path"), "{e}");
    let e = err_of(&format!("{base}path = \"/run/k\"\nmode = \"0644\"\n"));
    assert!(e.contains("secret[0].mode"), "{e}");
    let e = err_of(&format!("{base}path = \"/run/k\"\nowner = \"root\"\n"));
    assert!(e.contains("secret[0].owner"), "{e}");
    let c = Config::from_toml(&format!(
        "{base}path = \"/run/k\"\nmode = \"0640\"\nowner = \"0:33\"\n"
    ))
    .unwrap();
    assert_eq!(c.secrets[0].mode_bits(), 0o640);
    assert_eq!(c.secrets[0].owner_ids(), (0, 33));
}

#[test]
fn volumes_are_checked_and_the_plan_dedups_resources() {
    let text = format!(
        r#"{MINIMAL}
[[volume]]
name = "data"
device = "PARTLABEL=data"
key = "default/disk/master"
key_derivation = "hkdf"
format = true
mountpoint = "/sysroot/data"

[[volume]]
name = "logs"
device = "/dev/vdc"
key = "default/disk/master"
key_derivation = "hkdf"
mountpoint = "/sysroot/logs"

[[secret]]
resource = "default/tls/key"
path = "/run/cvm-init/tls/key.pem"
"#
    );
    let c = Config::from_toml(&text).unwrap();
    let plan = c.plan();
    let got: Vec<&str> = plan.resources.iter().map(|r| r.as_str()).collect();
    assert_eq!(got, ["default/disk/master", "default/tls/key"]);
    let shown = plan.to_string();
    assert!(
        shown.contains("formatted on first boot only if blank"),
        "{shown}"
    );
    assert!(shown.contains("never formatted"), "{shown}");

    let e = err_of(&text.replace("name = \"logs\"", "name = \"data\""));
    assert!(e.contains("volume[1].name"), "{e}");
    let e = err_of(&text.replace("PARTLABEL=data", "sdb"));
    assert!(e.contains("volume[0].device"), "{e}");
}

#[test]
fn relative_ca_path_is_taken_from_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[broker]\nurl = \"https://k\"\nca_cert = \"ca.pem\"\n",
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.broker.ca_cert.unwrap(), dir.path().join("ca.pem"));
    let e = Config::load(&dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.toml") && e.contains("--config"), "{e}");
}

#[test]
fn cmdline_may_only_change_the_log_level() {
    let o = Overrides::parse(
        "root=/dev/vda cvm_init.log_level=debug cvm_init.broker.url=http://evil cvm_init.attester=simulated quiet",
    );
    assert_eq!(o.log_level, Some(LogLevel::Debug));
    assert_eq!(o.ignored.len(), 2, "{:?}", o.ignored);
    let mut c = Config::from_toml(MINIMAL).unwrap();
    let before = c.broker.url.clone();
    o.apply(&mut c);
    assert_eq!(c.log.level, LogLevel::Debug);
    assert_eq!(c.broker.url, before);
    assert_eq!(c.attester.kind, AttesterKind::Auto);
    let o = Overrides::parse("cvm_init.log_level=loud");
    assert_eq!(o.log_level, None);
    assert_eq!(o.ignored.len(), 1);
}

#[test]
fn init_data_rules_come_only_from_the_measured_config() {
    let with = |section: &str| format!("{MINIMAL}\n[init_data]\n{section}");
    let ok = Config::from_toml(&with(
        "path = \"/run/cvm-init/init-data.toml\"\nallow = [\"secret\", \"volume.format\"]\nmount_under = \"/sysroot/srv\"\n",
    ))
    .unwrap();
    let d = ok.init_data.as_ref().unwrap();
    assert!(!d.required);
    assert_eq!(
        d.allow,
        [InitDataAllow::Secret, InitDataAllow::VolumeFormat]
    );
    assert!(ok
        .plan()
        .to_string()
        .contains("init-data: /run/cvm-init/init-data.toml (optional)"));

    for (section, want) in [
        ("path = \"/x\"\nallow = []\n", "init_data.allow"),
        ("path = \"/x\"\nallow = [\"broker\"]\n", "unknown variant"),
        ("path = \"x\"\nallow = [\"secret\"]\n", "init_data.path"),
        (
            "path = \"/x\"\nallow = [\"volume\"]\n",
            "init_data.mount_under",
        ),
        (
            "path = \"/x\"\nallow = [\"volume\"]\nmount_under = \"/\"\n",
            "init_data.mount_under",
        ),
    ] {
        let e = err_of(&with(section));
        assert!(e.contains(want), "{section}: {e}");
    }
}

#[test]
fn simulated_host_data_only_for_the_simulated_tee() {
    let e = err_of(&format!(
        "{MINIMAL}\n[attester]\nkind = \"snp\"\nsimulated_host_data = \"00\"\n"
    ));
    assert!(e.contains("attester.simulated_host_data"), "{e}");
    let e = err_of(&format!(
        "{MINIMAL}\n[attester]\nkind = \"simulated\"\nsimulated_host_data = \"zz\"\n"
    ));
    assert!(e.contains("hex"), "{e}");
    Config::from_toml(&format!(
        "{MINIMAL}\n[attester]\nkind = \"simulated\"\nsimulated_host_data = \"{}\"\n",
        "ab".repeat(48)
    ))
    .unwrap();
}

const PID1: &str = r#"
[boot]
root = "/dev/vda"
"#;

const VERITY: &str = r#"
[boot.verity]
root_hash = "4b3a2c1d4b3a2c1d4b3a2c1d4b3a2c1d4b3a2c1d4b3a2c1d4b3a2c1d4b3a2c1d"
hash_offset = 67108864
data_blocks = 16384
salt = "a1b2"
"#;

#[test]
fn a_pid1_root_without_verity_is_refused_naming_boot() {
    let e = err_of(&format!("{MINIMAL}{PID1}"));
    assert!(e.contains("`boot`"), "{e}");
    assert!(e.contains("unverified"), "{e}");
    assert!(e.contains("[boot.verity]"), "{e}");
    // A debug image may boot an unverified root; the plan says so.
    let c =
        Config::from_toml(&format!("{MINIMAL}{PID1}\n[failure]\ndebug_image = true\n")).unwrap();
    assert!(c.plan().to_string().contains("UNVERIFIED"), "{}", c.plan());
}

#[test]
fn a_verity_root_is_accepted_with_safe_defaults_and_shown_in_the_plan() {
    let c = Config::from_toml(&format!("{MINIMAL}{PID1}{VERITY}")).unwrap();
    let v = c.boot.as_ref().unwrap().verity.as_ref().unwrap();
    assert_eq!(v.hash, VerityHash::Sha256);
    assert_eq!(v.on_corruption, CorruptionAction::Panic);
    assert_eq!((v.data_block_size, v.hash_block_size), (4096, 4096));
    let plan = c.plan().to_string();
    assert!(plan.contains("dm-verity (sha256, root hash 4b3a"), "{plan}");
    assert!(plan.contains("kernel panic on corruption"), "{plan}");
}

#[test]
fn bad_verity_parameters_are_refused_naming_the_field() {
    let cases = [
        (
            "root_hash = \"4b3a",
            "root_hash = \"zz3a",
            "boot.verity.root_hash",
        ),
        (
            "root_hash = \"4b3a",
            "root_hash = \"3a",
            "boot.verity.root_hash",
        ),
        ("salt = \"a1b2\"", "salt = \"xyz\"", "boot.verity.salt"),
        (
            "data_blocks = 16384",
            "data_blocks = 0",
            "boot.verity.data_blocks",
        ),
        (
            "hash_offset = 67108864",
            "hash_offset = 1000",
            "boot.verity.hash_offset",
        ),
        // The tree may not overlap the data it verifies.
        (
            "hash_offset = 67108864",
            "hash_offset = 4096",
            "boot.verity.hash_offset",
        ),
        (
            "salt = \"a1b2\"",
            "salt = \"a1b2\"\ndata_block_size = 1000",
            "boot.verity.data_block_size",
        ),
        (
            "salt = \"a1b2\"",
            "salt = \"a1b2\"\nhash = \"sha1\"",
            "hash",
        ),
        (
            "salt = \"a1b2\"",
            "salt = \"a1b2\"\nhash_device = \"vdb\"",
            "boot.verity.hash_device",
        ),
    ];
    for (from, to, field) in cases {
        let text = format!("{MINIMAL}{PID1}{}", VERITY.replace(from, to));
        let e = err_of(&text);
        assert!(e.contains(field), "{to}: {e}");
    }
    // sha512 needs a 64-byte root hash.
    let e = err_of(&format!(
        "{MINIMAL}{PID1}{}\nhash = \"sha512\"\n",
        VERITY.trim_end()
    ));
    assert!(e.contains("sha512 digest"), "{e}");
    let e = err_of(&format!(
        "{MINIMAL}{}{VERITY}",
        PID1.replace(
            "root = \"/dev/vda\"",
            "root = \"/dev/vda\"\nroot_options = [\"rw\"]"
        )
    ));
    assert!(e.contains("boot.root_options"), "{e}");
}

#[test]
fn root_integrity_image_needs_a_one_line_reason_and_no_pid1() {
    let e = err_of(&format!("{MINIMAL}\n[root]\nintegrity = \"image\"\n"));
    assert!(e.contains("root.reason"), "{e}");
    let e = err_of(&format!(
        "{MINIMAL}\n[root]\nintegrity = \"image\"\nreason = \"a\\nb\"\n"
    ));
    assert!(e.contains("one line"), "{e}");
    let e = err_of(&format!(
        "{MINIMAL}{PID1}{VERITY}\n[root]\nintegrity = \"image\"\nreason = \"x\"\n"
    ));
    assert!(e.contains("root.integrity"), "{e}");
    let c = Config::from_toml(&format!(
        "{MINIMAL}\n[root]\nintegrity = \"image\"\nreason = \"roothash= in the UKI\"\n"
    ))
    .unwrap();
    assert!(
        c.plan()
            .to_string()
            .contains("protected by the image, not checked: roothash= in the UKI"),
        "{}",
        c.plan()
    );
    // Without [root], cvm-init boot checks the root itself.
    let c = Config::from_toml(MINIMAL).unwrap();
    assert!(c.plan().to_string().contains("must be a dm-verity device"));
}

const VOLUME: &str = r#"
[[volume]]
name = "data"
device = "/dev/vdb"
key = "default/disk/data"
mountpoint = "/sysroot/data"
"#;

#[test]
fn a_mountpoint_must_be_plain_names() {
    for bad in ["/sysroot/srv/../etc", "/sysroot/./data", "data", "/"] {
        let e = err_of(&format!(
            "{MINIMAL}{}",
            VOLUME.replace("/sysroot/data", bad)
        ));
        assert!(e.contains("volume[0].mountpoint"), "{bad}: {e}");
    }
}

#[test]
fn two_volumes_sharing_a_raw_key_are_refused() {
    let second = VOLUME
        .replace("\"data\"", "\"logs\"")
        .replace("/sysroot/data", "/sysroot/logs");
    let e = err_of(&format!("{MINIMAL}{VOLUME}{second}"));
    assert!(e.contains("volume[1].key"), "{e}");
    assert!(e.contains("\"data\""), "{e}");
    // HKDF binds each key to its volume's name: a shared resource is fine.
    let hkdf = |v: &str| v.replace("mountpoint", "key_derivation = \"hkdf\"\nmountpoint");
    Config::from_toml(&format!("{MINIMAL}{}{}", hkdf(VOLUME), hkdf(&second))).unwrap();
}

#[test]
fn discard_is_off_unless_asked_for() {
    let c = Config::from_toml(&format!("{MINIMAL}{VOLUME}")).unwrap();
    assert!(!c.volumes[0].discard);
}

#[test]
fn luks_uuid_pins_must_be_uuids_and_distinct() {
    let pin =
        |v: &str, u: &str| v.replace("mountpoint", &format!("luks_uuid = \"{u}\"\nmountpoint"));
    let u = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427";
    let c = Config::from_toml(&format!("{MINIMAL}{}", pin(VOLUME, u))).unwrap();
    assert_eq!(c.volumes[0].luks_uuid.as_deref(), Some(u));
    let e = err_of(&format!("{MINIMAL}{}", pin(VOLUME, "not-a-uuid")));
    assert!(e.contains("volume[0].luks_uuid"), "{e}");
    let second = VOLUME
        .replace("\"data\"", "\"logs\"")
        .replace("/sysroot/data", "/sysroot/logs")
        .replace("default/disk/data", "default/disk/logs");
    let e = err_of(&format!("{MINIMAL}{}{}", pin(VOLUME, u), pin(&second, u)));
    assert!(
        e.contains("volume[1].luks_uuid") && e.contains("\"data\""),
        "{e}"
    );
}

#[test]
fn instance_id_must_be_printable() {
    let c = Config::from_toml(&format!("instance_id = \"vm-42\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.instance_id.as_deref(), Some("vm-42"));
    let e = err_of(&format!("instance_id = \"\"\n{MINIMAL}"));
    assert!(e.contains("instance_id"), "{e}");
}

#[test]
fn gpus_default_to_none_and_take_the_three_policies() {
    let c = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(c.attester.gpus, GpuPolicy::None);
    assert!(!c.plan().to_string().contains("GPUs"));
    for (text, want) in [
        ("none", GpuPolicy::None),
        ("if-present", GpuPolicy::IfPresent),
        ("required", GpuPolicy::Required),
    ] {
        let c = Config::from_toml(&format!("{MINIMAL}\n[attester]\ngpus = \"{text}\"\n")).unwrap();
        assert_eq!(c.attester.gpus, want);
        assert_eq!(c.attester.gpus.to_string(), text);
    }
    let c = Config::from_toml(&format!("{MINIMAL}\n[attester]\ngpus = \"required\"\n")).unwrap();
    assert!(
        c.plan().to_string().contains("GPUs: required"),
        "{}",
        c.plan()
    );
    // A misspelt policy names the field and the accepted values.
    let e = err_of(&format!("{MINIMAL}\n[attester]\ngpus = \"yes\"\n"));
    assert!(e.contains("gpus") && e.contains("if-present"), "{e}");
    let e = err_of(&format!("{MINIMAL}\n[attester]\ngpus = \"if_present\"\n"));
    assert!(e.contains("if-present"), "{e}");
}

#[test]
fn the_cmdline_cannot_change_the_gpu_policy() {
    let o = Overrides::parse("cvm_init.gpus=none cvm_init.attester.gpus=none");
    assert_eq!(o.ignored.len(), 2, "{:?}", o.ignored);
}
