#![allow(clippy::unwrap_used)]

use super::*;

const MEASURED: &str = r#"
[broker]
url = "https://kbs.example:8080"
spki_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[[secret]]
resource = "default/tls/key"
path = "/run/workload/key.pem"

[init_data]
path = "/run/cvm-init/init-data.toml"
allow = ["secret", "volume"]
mount_under = "/sysroot/srv"
"#;

fn measured() -> Config {
    Config::from_toml(MEASURED).expect("measured config")
}

fn doc(algorithm: &str, part: &str) -> String {
    format!("version = \"0.1.0\"\nalgorithm = \"{algorithm}\"\n[data]\n\"cvm-init.toml\" = '''\n{part}'''\n")
}

fn parse(body: String) -> Result<InitData, InitDataError> {
    InitData::parse(Path::new("/run/cvm-init/init-data.toml"), body)
}

fn host(register: &'static str, value: Vec<u8>) -> HostData {
    let width = match register {
        "SNP HOST_DATA" => Some(32),
        "TDX MRCONFIGID" => Some(48),
        _ => None,
    };
    HostData {
        register,
        value,
        width,
    }
}

const SECRET: &str =
    "[[secret]]\nresource = \"default/app/token\"\npath = \"/run/cvm-init/app/token\"\n";

#[test]
fn digest_is_of_the_whole_document_by_its_own_algorithm() {
    for (alg, len) in [("sha256", 32), ("sha384", 48), ("sha512", 64)] {
        let body = doc(alg, SECRET);
        let d = parse(body.clone()).expect("parse");
        assert_eq!(d.digest().len(), len, "{alg}");
        assert_eq!(d.algorithm().name(), alg);
        let want = match alg {
            "sha256" => Sha256::digest(body.as_bytes()).to_vec(),
            "sha384" => Sha384::digest(body.as_bytes()).to_vec(),
            _ => Sha512::digest(body.as_bytes()).to_vec(),
        };
        assert_eq!(d.digest(), want.as_slice());
    }
}

#[test]
fn the_register_value_is_padded_or_truncated_as_trustee_does() {
    let d = parse(doc("sha256", SECRET)).expect("parse");
    let tdx = d.register_value(48);
    assert_eq!(&tdx[..32], d.digest());
    assert_eq!(&tdx[32..], &[0u8; 16]);
    let d = parse(doc("sha384", SECRET)).expect("parse");
    assert_eq!(d.register_value(32), d.digest()[..32].to_vec());
    assert_eq!(d.register_value(48), d.digest().to_vec());
}

#[test]
fn a_matching_register_passes_and_any_other_is_refused_with_the_fix() {
    let d = parse(doc("sha384", SECRET)).expect("parse");
    d.verify(&host("SNP HOST_DATA", d.register_value(32)))
        .expect("snp");
    d.verify(&host("TDX MRCONFIGID", d.register_value(48)))
        .expect("tdx");
    d.verify(&host("simulated host data", d.digest().to_vec()))
        .expect("sim");

    let mut other = d.register_value(32);
    other[5] ^= 1;
    let e = d
        .verify(&host("SNP HOST_DATA", other.clone()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SNP HOST_DATA"), "{e}");
    assert!(e.contains(&hex::encode(d.register_value(32))), "{e}");
    assert!(e.contains(&hex::encode(&other)), "{e}");
    assert!(e.contains("Refusing to use any of it"), "{e}");
    assert!(e.contains("host-data="), "{e}");

    let e = d
        .verify(&host("SNP HOST_DATA", vec![0; 32]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("launched without host data"), "{e}");
    let e = d
        .verify(&host("simulated host data", vec![]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is empty"), "{e}");
}

#[test]
fn malformed_documents_name_the_problem() {
    for (body, want) in [
        ("not toml [".to_owned(), "not an init-data document"),
        (doc("md5", SECRET), "algorithm \"md5\""),
        (
            doc("sha256", SECRET).replace("0.1.0", "0.2.0"),
            "version \"0.2.0\"",
        ),
    ] {
        let e = parse(body).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn allowed_additions_are_merged_and_validated() {
    let part = format!(
        "{SECRET}[[volume]]\nname = \"scratch\"\ndevice = \"/dev/vdc\"\nkey = \"default/disk/scratch\"\nmountpoint = \"/sysroot/srv/scratch\"\n"
    );
    let d = parse(doc("sha384", &part)).expect("parse");
    let merged = d.apply(&measured()).expect("apply");
    assert_eq!(merged.secrets.len(), 2);
    assert_eq!(merged.volumes.len(), 1);
    let plan = merged.plan();
    let names: Vec<&str> = plan.resources.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "default/disk/scratch",
            "default/tls/key",
            "default/app/token"
        ]
    );
}

#[test]
fn what_the_measured_config_does_not_allow_is_refused() {
    let vol = |extra: &str, mount: &str| {
        format!("[[volume]]\nname = \"v\"\ndevice = \"/dev/vdc\"\nkey = \"a/b/c\"\nmountpoint = \"{mount}\"\n{extra}")
    };
    let cases = [
        // The broker, its pin, the attester: not additions at all.
        (
            "[broker]\nurl = \"https://evil\"\n".to_owned(),
            "unknown field",
        ),
        (
            "[attester]\nkind = \"simulated\"\n".to_owned(),
            "unknown field",
        ),
        (vol("format = true\n", "/sysroot/srv/v"), "format = true"),
        (vol("", "/sysroot/etc"), "not below /sysroot/srv"),
        (vol("", "/sysroot/srv"), "not below /sysroot/srv"),
        (
            "[[secret]]\nresource = \"a/b/c\"\npath = \"/run/systemd/x\"\n".to_owned(),
            "outside /run/cvm-init",
        ),
        (
            "[[secret]]\nresource = \"a/b/c\"\npath = \"/run/cvm-init/x\"\nmode = \"0666\"\n"
                .to_owned(),
            "makes the config invalid",
        ),
    ];
    for (part, want) in cases {
        let d = parse(doc("sha256", &part)).expect("parse");
        let e = d.apply(&measured()).unwrap_err().to_string();
        assert!(e.contains(want), "{part}: {e}");
        assert!(e.contains("cvm-init.toml"), "{e}");
    }

    // Secrets only: volumes are refused.
    let only_secrets = MEASURED
        .replace("allow = [\"secret\", \"volume\"]", "allow = [\"secret\"]")
        .replace("mount_under = \"/sysroot/srv\"\n", "");
    let config = Config::from_toml(&only_secrets).expect("config");
    let d = parse(doc("sha256", &vol("", "/sysroot/srv/v"))).expect("parse");
    let e = d.apply(&config).unwrap_err().to_string();
    assert!(e.contains("adds [[volume]]"), "{e}");
    assert!(e.contains("allows: secret"), "{e}");
}

#[test]
fn other_agents_entries_are_ignored_and_a_missing_optional_document_is_fine() {
    let body = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = \"x\"\n";
    let d = parse(body.to_owned()).expect("parse");
    let merged = d.apply(&measured()).expect("apply");
    assert_eq!(merged.secrets.len(), 1);
    assert_eq!(d.to_wire().format, "toml");
    assert_eq!(d.to_wire().body, body);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = measured().init_data.expect("init_data");
    cfg.path = dir.path().join("absent.toml");
    assert!(load(Some(&cfg)).expect("optional").is_none());
    cfg.required = true;
    let e = load(Some(&cfg)).unwrap_err().to_string();
    assert!(e.contains("required"), "{e}");
    std::fs::write(&cfg.path, vec![b'#'; MAX_LEN as usize + 1]).expect("write");
    let e = load(Some(&cfg)).unwrap_err().to_string();
    assert!(e.contains("larger than"), "{e}");
}

#[test]
fn instance_id_comes_from_init_data_only_when_allowed_and_unset() {
    let part = "instance_id = \"vm-7\"\n";
    let d = parse(doc("sha256", part)).expect("parse");
    let e = d.apply(&measured()).unwrap_err().to_string();
    assert!(e.contains("sets instance_id"), "{e}");
    let allowing = Config::from_toml(&MEASURED.replace(
        "allow = [\"secret\", \"volume\"]",
        "allow = [\"secret\", \"volume\", \"instance_id\"]",
    ))
    .unwrap();
    assert_eq!(
        d.apply(&allowing).unwrap().instance_id.as_deref(),
        Some("vm-7")
    );
    let mut pinned = allowing.clone();
    pinned.instance_id = Some("vm-1".to_owned());
    let e = d.apply(&pinned).unwrap_err().to_string();
    assert!(e.contains("already sets"), "{e}");
}

#[test]
fn host_mountpoints_cannot_climb_out_of_mount_under() {
    for mount in ["/sysroot/srv/../etc", "/sysroot/srv/./x/../../etc"] {
        let part = format!(
            "[[volume]]\nname = \"v\"\ndevice = \"/dev/vdc\"\nkey = \"a/b/c\"\nmountpoint = \"{mount}\"\n"
        );
        let d = parse(doc("sha256", &part)).expect("parse");
        let e = d.apply(&measured()).unwrap_err().to_string();
        assert!(
            e.contains("mountpoint") || e.contains("not below"),
            "{mount}: {e}"
        );
    }
}
