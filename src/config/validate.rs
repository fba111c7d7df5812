//! Validation: every rule serde cannot express, cross-field and security
//! rules. Each error names the field and says what to change.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;

impl Config {
    /// Checks everything serde cannot: cross-field rules and security rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_broker()?;
        if let Some(id) = &self.instance_id {
            if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control()) {
                return Err(invalid(
                    "instance_id",
                    format!("{id:?} is empty, longer than 256 bytes or holds control characters"),
                    "use a short printable identity of this VM, or leave it out",
                ));
            }
        }
        let mut names = BTreeSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            let field = |f: &str| format!("volume[{i}].{f}");
            let name_ok = !v.name.is_empty()
                && v.name.len() <= 64
                && v.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && !v.name.starts_with('.');
            if !name_ok {
                return Err(invalid(
                    field("name"),
                    format!("{:?} is not a usable device-mapper name", v.name),
                    "use 1-64 characters from [A-Za-z0-9_.-], not starting with '.'",
                ));
            }
            if !names.insert(v.name.clone()) {
                return Err(invalid(
                    field("name"),
                    format!("{:?} is used by two volumes", v.name),
                    "give every volume its own name",
                ));
            }
            if !is_device_ref(&v.device) {
                return Err(invalid(
                    field("device"),
                    format!("{:?} is not a device reference", v.device),
                    "use /dev/..., UUID=..., PARTUUID=... or PARTLABEL=...",
                ));
            }
            // As written: Path::components() would hide a "." component.
            let plain = v.mountpoint.to_str().is_some_and(|m| {
                m.split('/')
                    .skip(1)
                    .all(|c| !c.is_empty() && c != "." && c != "..")
            });
            if !v.mountpoint.is_absolute() || !plain || v.mountpoint == Path::new("/") {
                return Err(invalid(
                    field("mountpoint"),
                    format!(
                        "{} is not an absolute path of plain names",
                        v.mountpoint.display()
                    ),
                    "use an absolute path without . or .. components, such as /sysroot/data",
                ));
            }
            if let Some(u) = &v.luks_uuid {
                if uuid::Uuid::parse_str(u).is_err() || u.len() != 36 {
                    return Err(invalid(
                        field("luks_uuid"),
                        format!("{u:?} is not a UUID"),
                        "write it like 1b4e28ba-2fa1-4d2b-883f-0016d3cca427 (lsblk -o UUID or cryptsetup luksUUID shows it), or leave it out",
                    ));
                }
                if let Some(other) = self.volumes[..i].iter().find(|o| {
                    o.luks_uuid
                        .as_deref()
                        .is_some_and(|o| o.eq_ignore_ascii_case(u))
                }) {
                    return Err(invalid(
                        field("luks_uuid"),
                        format!("{u} is also pinned by volume {:?}", other.name),
                        "every disk has its own UUID: pin a different one",
                    ));
                }
            }
            if v.key_derivation == KeyDerivation::Raw {
                if let Some(other) = self.volumes[..i]
                    .iter()
                    .find(|o| o.key == v.key && o.key_derivation == KeyDerivation::Raw)
                {
                    return Err(invalid(
                        field("key"),
                        format!(
                            "{} is also the raw key of volume {:?}: each would open the other's disk",
                            v.key, other.name
                        ),
                        "give each volume its own resource, or use key_derivation = \"hkdf\", which binds the key to the volume",
                    ));
                }
            }
        }
        for (i, s) in self.secrets.iter().enumerate() {
            let field = |f: &str| format!("secret[{i}].{f}");
            if !s.path.is_absolute()
                || !s.path.starts_with("/run/")
                || s.path
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(invalid(
                    field("path"),
                    format!("{} is not below /run", s.path.display()),
                    "secrets go to tmpfs only: use a path such as /run/cvm-init/tls/key.pem",
                ));
            }
            match parse_mode(&s.mode) {
                Some(m) if m & 0o007 == 0 => {}
                Some(_) => {
                    return Err(invalid(
                        field("mode"),
                        format!("{} lets every user read or write the secret", s.mode),
                        "use 0600, 0640 or 0400",
                    ))
                }
                None => {
                    return Err(invalid(
                        field("mode"),
                        format!("{:?} is not an octal mode", s.mode),
                        "write it as a string of octal digits, e.g. \"0600\"",
                    ))
                }
            }
            if parse_owner(&s.owner).is_none() {
                return Err(invalid(
                    field("owner"),
                    format!("{:?} is not uid:gid", s.owner),
                    "use numeric ids, e.g. \"0:0\" or \"1000:1000\"",
                ));
            }
        }
        if let Some(n) = &self.network {
            match (&n.address, &n.dhcp_command) {
                (Some(a), None) => {
                    if parse_cidr(a).is_none() {
                        return Err(invalid(
                            "network.address",
                            format!("{a:?} is not an IPv4 address with a prefix"),
                            "write it as a.b.c.d/prefix, e.g. \"10.0.2.15/24\"",
                        ));
                    }
                    if let Some(g) = &n.gateway {
                        if g.parse::<std::net::Ipv4Addr>().is_err() {
                            return Err(invalid(
                                "network.gateway",
                                format!("{g:?} is not an IPv4 address"),
                                "write it as a.b.c.d",
                            ));
                        }
                    }
                }
                (None, Some(cmd)) if !cmd.is_empty() => {}
                _ => {
                    return Err(invalid(
                        "network",
                        "needs exactly one of address or dhcp_command",
                        "set address = \"a.b.c.d/prefix\" (and gateway), or dhcp_command = [...]",
                    ))
                }
            }
        }
        if let Some(h) = &self.attester.simulated_host_data {
            if self.attester.kind != AttesterKind::Simulated {
                return Err(invalid(
                    "attester.simulated_host_data",
                    format!("is set but the attester is {}", self.attester.kind),
                    "remove it: real hardware reports the host data the VM was launched with",
                ));
            }
            if h.is_empty() || h.len() > 128 || hex::decode(h).is_err() {
                return Err(invalid(
                    "attester.simulated_host_data",
                    format!("{h:?} is not 1 to 64 bytes of hex"),
                    "write the digest as hex, e.g. the init-data document's SHA-384",
                ));
            }
        }
        let imds = &self.attester.azure_imds;
        let host = imds.strip_prefix("http://");
        if host.is_none_or(|h| h.is_empty() || h.contains(['/', '?', '#', ' '])) {
            return Err(invalid(
                "attester.azure_imds",
                format!("{imds:?} is not an http:// base URL"),
                "leave it out (Azure's http://169.254.169.254), or write http://HOST[:PORT] \
                 without a path",
            ));
        }
        if let Some(d) = &self.init_data {
            self.validate_init_data(d)?;
            if self.attester.kind.azure().is_some() {
                return Err(invalid(
                    "init_data",
                    format!("is set but the attester is {}", self.attester.kind),
                    "remove [init_data]: on Azure the launch register belongs to the paravisor, \
                     so a host-supplied document cannot be checked against it",
                ));
            }
        }
        self.validate_root()?;
        if self.failure.action == FailureAction::Shell && !self.failure.debug_image {
            return Err(invalid(
                "failure.action",
                "\"shell\" would give a root shell on the console of a production image",
                "use \"halt\" or \"reboot\", or set failure.debug_image = true in a debug image",
            ));
        }
        Ok(())
    }

    fn validate_init_data(&self, d: &InitDataConfig) -> Result<(), ConfigError> {
        if !d.path.is_absolute() {
            return Err(invalid(
                "init_data.path",
                format!("{} is not absolute", d.path.display()),
                "use an absolute path, e.g. /run/cvm-init/init-data.toml",
            ));
        }
        if d.allow.is_empty() {
            return Err(invalid(
                "init_data.allow",
                "is empty, so a host-supplied config could change nothing",
                "list what it may add (\"secret\", \"volume\", \"volume.format\"), or remove [init_data]",
            ));
        }
        let volumes = d
            .allow
            .iter()
            .any(|a| matches!(a, InitDataAllow::Volume | InitDataAllow::VolumeFormat));
        match &d.mount_under {
            None if volumes => {
                return Err(invalid(
                    "init_data.mount_under",
                    "is missing but host-supplied volumes are allowed",
                    "set the directory they mount below, e.g. \"/sysroot/srv\"",
                ))
            }
            Some(m) if !m.is_absolute() || m == Path::new("/") => {
                return Err(invalid(
                    "init_data.mount_under",
                    format!("{} is not an absolute directory below /", m.display()),
                    "use a dedicated directory, e.g. \"/sysroot/srv\"",
                ))
            }
            _ => {}
        }
        Ok(())
    }

    fn validate_broker(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        let (scheme, rest) = b.url.split_once("://").ok_or_else(|| {
            invalid(
                "broker.url",
                format!("{:?} has no scheme", b.url),
                "write it as https://host:port",
            )
        })?;
        if rest.is_empty() || rest.contains(['?', '#']) {
            return Err(invalid(
                "broker.url",
                format!("{:?} has no host, or has a query or fragment", b.url),
                "write it as https://host:port (the /kbs/v0 path is added by the agent)",
            ));
        }
        match scheme {
            "https" => {
                if b.insecure_http {
                    return Err(invalid(
                        "broker.insecure_http",
                        "is set but the URL is https",
                        "remove insecure_http",
                    ));
                }
                match (&b.ca_cert, &b.spki_sha256) {
                    (None, None) => {
                        return Err(invalid(
                            "broker.ca_cert",
                            "the broker is not pinned",
                            "set ca_cert (PEM file of the broker's CA) or spki_sha256 (hex SHA-256 of its public key)",
                        ))
                    }
                    (Some(_), Some(_)) => {
                        return Err(invalid(
                            "broker.spki_sha256",
                            "both ca_cert and spki_sha256 are set",
                            "pin the broker one way: keep either ca_cert or spki_sha256",
                        ))
                    }
                    _ => {}
                }
                if let Some(h) = &b.spki_sha256 {
                    if h.len() != 64 || hex::decode(h).is_err() {
                        return Err(invalid(
                            "broker.spki_sha256",
                            format!("{h:?} is not 64 hex digits"),
                            "use the hex SHA-256 of the DER SubjectPublicKeyInfo",
                        ));
                    }
                }
            }
            "http" => {
                if !b.insecure_http {
                    return Err(invalid(
                        "broker.url",
                        "http:// does not authenticate the broker",
                        "use https:// with a pinned ca_cert, or for development only set insecure_http = true",
                    ));
                }
            }
            other => {
                return Err(invalid(
                    "broker.url",
                    format!("scheme {other:?} is not supported"),
                    "use https://",
                ))
            }
        }
        if b.connect_timeout_secs == 0 || b.request_timeout_secs == 0 || b.deadline_secs == 0 {
            return Err(invalid(
                "broker.*_secs",
                "a timeout or deadline is 0",
                "use a positive number of seconds",
            ));
        }
        if b.deadline_secs < b.request_timeout_secs {
            return Err(invalid(
                "broker.deadline_secs",
                format!(
                    "{} s is shorter than one request ({} s)",
                    b.deadline_secs, b.request_timeout_secs
                ),
                "make deadline_secs at least request_timeout_secs",
            ));
        }
        Ok(())
    }

    /// The root the workload runs from must be one the host cannot change:
    /// as PID 1, dm-verity with every parameter from this file; under
    /// systemd, checked at boot unless the image says how it is protected.
    fn validate_root(&self) -> Result<(), ConfigError> {
        let r = &self.root;
        match (r.integrity, r.reason.as_deref().map(str::trim)) {
            (RootIntegrity::Image, None | Some("")) => {
                return Err(invalid(
                    "root.reason",
                    "root.integrity = \"image\" needs a reason",
                    "say in one line what protects the root, e.g. reason = \"mkosi Verity= image, roothash= in the UKI\"",
                ))
            }
            (_, Some(reason)) if reason.contains('\n') || reason.len() > 200 => {
                return Err(invalid(
                    "root.reason",
                    "is more than one line (200 characters)",
                    "say in one line what protects the root",
                ))
            }
            (RootIntegrity::Verity, Some(_)) => {
                return Err(invalid(
                    "root.reason",
                    "is set but root.integrity is \"verity\"",
                    "remove reason, or set integrity = \"image\"",
                ))
            }
            _ => {}
        }
        let Some(boot) = &self.boot else {
            return Ok(());
        };
        if r.integrity == RootIntegrity::Image {
            return Err(invalid(
                "root.integrity",
                "\"image\" is for roots an initrd's own units mount; as PID 1 cvm-init mounts [boot] root itself",
                "give the root's dm-verity parameters in [boot.verity] and remove [root]",
            ));
        }
        let Some(v) = &boot.verity else {
            if self.failure.debug_image {
                return Ok(());
            }
            return Err(invalid(
                "boot",
                format!(
                    "the root {} would be mounted unverified: the host can write that disk and change {} (the workload's init), which then runs next to the unlocked volumes and the secrets",
                    boot.root,
                    boot.init.display()
                ),
                "add [boot.verity] with the root's dm-verity parameters (`veritysetup format --no-superblock` prints the root hash), or mark a debug image with failure.debug_image = true",
            ));
        };
        if self.volumes.iter().any(|vol| vol.name == "root") {
            return Err(invalid(
                "volume.name",
                "\"root\" is the device-mapper name of the verified root",
                "give the volume another name",
            ));
        }
        if boot.root_options.iter().any(|o| o == "rw") {
            return Err(invalid(
                "boot.root_options",
                "\"rw\" on a dm-verity root, which is read-only",
                "use [\"ro\"]",
            ));
        }
        let field = |f: &str| format!("boot.verity.{f}");
        let hash_len = v.hash.digest_len();
        if v.root_hash.len() != 2 * hash_len || hex::decode(&v.root_hash).is_err() {
            return Err(invalid(
                field("root_hash"),
                format!(
                    "{:?} is not a {} digest ({} hex digits)",
                    v.root_hash,
                    v.hash.name(),
                    2 * hash_len
                ),
                "copy the \"Root hash\" that veritysetup format printed",
            ));
        }
        if v.salt.len() > 512 || hex::decode(&v.salt).is_err() {
            return Err(invalid(
                field("salt"),
                format!("{:?} is not hex of at most 256 bytes", v.salt),
                "copy the \"Salt\" that veritysetup format printed, or \"\" for none",
            ));
        }
        for (name, size) in [
            ("data_block_size", v.data_block_size),
            ("hash_block_size", v.hash_block_size),
        ] {
            if !size.is_power_of_two() || !(512..=65536).contains(&size) {
                return Err(invalid(
                    field(name),
                    format!("{size} is not a power of two from 512 to 65536"),
                    "use the block size given to veritysetup format (default 4096)",
                ));
            }
        }
        if v.data_blocks == 0 {
            return Err(invalid(
                field("data_blocks"),
                "is 0",
                "use the \"Data blocks\" that veritysetup format printed",
            ));
        }
        if v.hash_offset % 512 != 0 {
            return Err(invalid(
                field("hash_offset"),
                format!("{} is not a multiple of 512", v.hash_offset),
                "use the byte offset given to veritysetup format --hash-offset",
            ));
        }
        let same_device = v.hash_device.as_deref().is_none_or(|d| d == boot.root);
        let data_end = v.data_blocks.saturating_mul(u64::from(v.data_block_size));
        if same_device && v.hash_offset < data_end {
            return Err(invalid(
                field("hash_offset"),
                format!(
                    "{} lies inside the {data_end} bytes of verified data on the same device",
                    v.hash_offset
                ),
                "put the hash tree after the data (--hash-offset at least data_blocks * data_block_size) or on hash_device",
            ));
        }
        if let Some(d) = &v.hash_device {
            if !is_device_ref(d) {
                return Err(invalid(
                    field("hash_device"),
                    format!("{d:?} is not a device reference"),
                    "use /dev/..., UUID=..., PARTUUID=... or PARTLABEL=...",
                ));
            }
        }
        Ok(())
    }
}

/// `/dev/...`, `UUID=...`, `PARTUUID=...` or `PARTLABEL=...`.
fn is_device_ref(d: &str) -> bool {
    d.starts_with("/dev/")
        || ["UUID=", "PARTUUID=", "PARTLABEL="]
            .iter()
            .any(|p| d.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}
