//! Decoding and verifying the real evidence samples in
//! `testdata/evidence` (see SOURCES.md there). Expected values are copied
//! from SOURCES.md (generated mechanically from its "Decoded fields"
//! sections) or from the upstream expected-claims files; none come from
//! this crate's own output.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use cvm_init::evidence::snp::{self, SigningKey, SnpProduct};
use cvm_init::evidence::{decode, tdx, ChainLink, Decoded, EvidenceError};
use sha2::{Digest, Sha256, Sha512};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/evidence")
}

fn read(rel: &str) -> Vec<u8> {
    let p = dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Reads a fixture and checks it is the file SOURCES.md describes.
fn read_checked(rel: &str, sha256: &str) -> Vec<u8> {
    let b = read(rel);
    assert_eq!(
        hex::encode(Sha256::digest(&b)),
        sha256,
        "{rel}: not the file SOURCES.md describes"
    );
    b
}

struct Tcb {
    raw: u64,
    bl: u8,
    tee: u8,
    snp: u8,
    ucode: u8,
}

struct SnpExpect {
    file: &'static str,
    vek: &'static str,
    version: u32,
    guest_svn: u32,
    policy: &'static str,
    abi_minor: u64,
    abi_major: u64,
    smt: bool,
    migrate_ma: bool,
    debug: bool,
    single_socket: bool,
    vmpl: u32,
    sig_algo: u32,
    signing_key: &'static str,
    platform_info: &'static str,
    current_tcb: Tcb,
    reported_tcb: Tcb,
    launch_tcb: Tcb,
    committed_tcb: Tcb,
    fw: (u8, u8, u8),
    cpuid: Option<(u8, u8, u8)>,
    family_id: &'static str,
    image_id: &'static str,
    report_data: &'static str,
    measurement: &'static str,
    host_data: &'static str,
    id_key_digest: &'static str,
    report_id: &'static str,
    chip_id: &'static str,
    mit_vector: Option<&'static str>,
    sha256: &'static str,
}

struct TdxExpect {
    file: &'static str,
    size: usize,
    version: u16,
    att_key_type: u16,
    qe_vendor_id: &'static str,
    user_data: &'static str,
    body_type: Option<u16>,
    sig_len: usize,
    trailing: usize,
    trailing_nonzero: bool,
    tee_tcb_svn: &'static str,
    mr_seam: &'static str,
    td_attributes: &'static str,
    xfam: &'static str,
    mr_td: &'static str,
    mr_config_id: &'static str,
    mr_owner: &'static str,
    mr_owner_config: &'static str,
    rtmr: [&'static str; 4],
    report_data: &'static str,
    tee_tcb_svn2: Option<&'static str>,
    mr_servicetd: Option<&'static str>,
    sha256: &'static str,
}

// ---- Expected values, from SOURCES.md "Decoded fields (computed locally)" --

const SNP: &[SnpExpect] = &[
    SnpExpect {
        file: "snp/trustee-milan-vcek-report.bin",
        vek: "snp/trustee-milan-vcek.der",
        version: 2,
        guest_svn: 4,
        policy: "0x3001f",
        abi_minor: 31,
        abi_major: 0,
        smt: true,
        migrate_ma: false,
        debug: false,
        single_socket: false,
        vmpl: 0,
        sig_algo: 1,
        signing_key: "vcek",
        platform_info: "0x1",
        current_tcb: Tcb { raw: 0xce08000000000003, bl: 3, tee: 0, snp: 8, ucode: 206 },
        reported_tcb: Tcb { raw: 0x7308000000000003, bl: 3, tee: 0, snp: 8, ucode: 115 },
        launch_tcb: Tcb { raw: 0x7308000000000003, bl: 3, tee: 0, snp: 8, ucode: 115 },
        committed_tcb: Tcb { raw: 0x7308000000000003, bl: 3, tee: 0, snp: 8, ucode: 115 },
        fw: (1, 52, 4),
        cpuid: None,
        family_id: "01000000000000000000000000000000",
        image_id: "02000000000000000000000000000000",
        report_data: "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e20000000000000000000000000000000000000000000000000000000000000000",
        measurement: "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c",
        host_data: "0000000000000000000000000000000000000000000000000000000000000000",
        id_key_digest: "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca491ecdd7f336dc28a6e0b2bb57af7a44a3",
        report_id: "385eba81216de4776548fcb86f8ead03c1ebc92b6207f3210d9ccebb89c99005",
        chip_id: "c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e",
        mit_vector: None,
        sha256: "7c614616feb65823351fa42620ea260fb84fd22b2337a480ca0d5f04f363ca38",
    },
    SnpExpect {
        file: "snp/trustee-milan-vlek-report.bin",
        vek: "snp/trustee-milan-vlek.der",
        version: 3,
        guest_svn: 0,
        policy: "0x30000",
        abi_minor: 0,
        abi_major: 0,
        smt: true,
        migrate_ma: false,
        debug: false,
        single_socket: false,
        vmpl: 1,
        sig_algo: 1,
        signing_key: "vlek",
        platform_info: "0x27",
        current_tcb: Tcb { raw: 0xdc18000000000004, bl: 4, tee: 0, snp: 24, ucode: 220 },
        reported_tcb: Tcb { raw: 0xd918000000000004, bl: 4, tee: 0, snp: 24, ucode: 217 },
        launch_tcb: Tcb { raw: 0xdb18000000000004, bl: 4, tee: 0, snp: 24, ucode: 219 },
        committed_tcb: Tcb { raw: 0xdb18000000000004, bl: 4, tee: 0, snp: 24, ucode: 219 },
        fw: (1, 55, 29),
        cpuid: Some((0x19, 0x01, 0x01)),
        family_id: "00000000000000000000000000000000",
        image_id: "00000000000000000000000000000000",
        report_data: "819770b7e6ea6df8dd8fd4dd146b073c0bf4f3ce5b0977ecac486e3a05ed1bd54e2a7ac1f5d1ca02e7d7d5ef9f73b8574fd9359e3a480d741a4478e8a7bc27ca",
        measurement: "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0",
        host_data: "0000000000000000000000000000000000000000000000000000000000000000",
        id_key_digest: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        report_id: "62e04fba700afd93b3a0cc0649b633ee36587fa8a8c2eb5d9b7cd7bc5f4bb057",
        chip_id: "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mit_vector: None,
        sha256: "decdab949afc590668e45869b20f23e4afc7ac03c61201ab20208c6668a58a2d",
    },
    SnpExpect {
        file: "snp/trustee-genoa-vcek-report.bin",
        vek: "snp/trustee-genoa-vcek.der",
        version: 3,
        guest_svn: 0,
        policy: "0x30000",
        abi_minor: 0,
        abi_major: 0,
        smt: true,
        migrate_ma: false,
        debug: false,
        single_socket: false,
        vmpl: 0,
        sig_algo: 1,
        signing_key: "vcek",
        platform_info: "0x25",
        current_tcb: Tcb { raw: 0x191700000000000a, bl: 10, tee: 0, snp: 23, ucode: 25 },
        reported_tcb: Tcb { raw: 0x191700000000000a, bl: 10, tee: 0, snp: 23, ucode: 25 },
        launch_tcb: Tcb { raw: 0x191700000000000a, bl: 10, tee: 0, snp: 23, ucode: 25 },
        committed_tcb: Tcb { raw: 0x191700000000000a, bl: 10, tee: 0, snp: 23, ucode: 25 },
        fw: (1, 55, 40),
        cpuid: Some((0x19, 0xa0, 0x02)),
        family_id: "00000000000000000000000000000000",
        image_id: "00000000000000000000000000000000",
        report_data: "7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf929eef3ff23c46e858f0b1982f9a92b17c51b578d958cde6b0c92978f150cf9b0",
        measurement: "6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4ae62a36d75c837974dd50b315506e73e",
        host_data: "0000000000000000000000000000000000000000000000000000000000000000",
        id_key_digest: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        report_id: "b34cb907a31ad237beb02efd236ab9899a7ddd66ff5beed2636765183a84e44f",
        chip_id: "371c55d6d15cb50f16dc31d39a24e300caaabff4431e841111429b73ec45ad67ea6e687ffae7bf84b54a5d0e6d79b3ef6ff0bd8b4cff94c2163af5c5de8718e8",
        mit_vector: None,
        sha256: "18e907bf99a957d8ccf30f2081da17f673da648a7a0b9d551a866e875234c21a",
    },
    SnpExpect {
        file: "snp/gosevguest-milan-report.bin",
        vek: "snp/gosevguest-milan-vcek.der",
        version: 2,
        guest_svn: 0,
        policy: "0xb0000",
        abi_minor: 0,
        abi_major: 0,
        smt: true,
        migrate_ma: false,
        debug: true,
        single_socket: false,
        vmpl: 0,
        sig_algo: 1,
        signing_key: "vcek",
        platform_info: "0x1",
        current_tcb: Tcb { raw: 0x4405000000000002, bl: 2, tee: 0, snp: 5, ucode: 68 },
        reported_tcb: Tcb { raw: 0x4405000000000002, bl: 2, tee: 0, snp: 5, ucode: 68 },
        launch_tcb: Tcb { raw: 0x4405000000000002, bl: 2, tee: 0, snp: 5, ucode: 68 },
        committed_tcb: Tcb { raw: 0x4405000000000002, bl: 2, tee: 0, snp: 5, ucode: 68 },
        fw: (1, 49, 3),
        cpuid: None,
        family_id: "00000000000000000000000000000000",
        image_id: "00000000000000000000000000000000",
        report_data: "01020304050000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        measurement: "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01",
        host_data: "0000000000000000000000000000000000000000000000000000000000000000",
        id_key_digest: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        report_id: "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a",
        chip_id: "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d",
        mit_vector: None,
        sha256: "377e6241d3b373ab1df80c0f96978594e7e21f4797dd6ea95e2957e1c1e26060",
    },
    SnpExpect {
        file: "snp/virtee-milan-report.bin",
        vek: "snp/virtee-milan-vcek.der",
        version: 2,
        guest_svn: 0,
        policy: "0x30000",
        abi_minor: 0,
        abi_major: 0,
        smt: true,
        migrate_ma: false,
        debug: false,
        single_socket: false,
        vmpl: 0,
        sig_algo: 1,
        signing_key: "vcek",
        platform_info: "0x1",
        current_tcb: Tcb { raw: 0x7308000000000003, bl: 3, tee: 0, snp: 8, ucode: 115 },
        reported_tcb: Tcb { raw: 0x7308000000000003, bl: 3, tee: 0, snp: 8, ucode: 115 },
        launch_tcb: Tcb { raw: 0x7308000000000003, bl: 3, tee: 0, snp: 8, ucode: 115 },
        committed_tcb: Tcb { raw: 0x7308000000000003, bl: 3, tee: 0, snp: 8, ucode: 115 },
        fw: (1, 52, 4),
        cpuid: None,
        family_id: "00000000000000000000000000000000",
        image_id: "00000000000000000000000000000000",
        report_data: "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd",
        measurement: "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
        host_data: "0000000000000000000000000000000000000000000000000000000000000000",
        id_key_digest: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        report_id: "92b3b47d59f0a2a10a74c5678868a80238cf593c01a82f3cffb878e904c28d5b",
        chip_id: "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6",
        mit_vector: None,
        sha256: "120d77b213c8868dd42f160ccb0114f05336ec715f6d51070f534b33c7e03f3b",
    },
    SnpExpect {
        file: "snp/teekit-sev-gcp.bin",
        vek: "snp/teekit-sev-gcp-vcek.pem",
        version: 5,
        guest_svn: 0,
        policy: "0x30000",
        abi_minor: 0,
        abi_major: 0,
        smt: true,
        migrate_ma: false,
        debug: false,
        single_socket: false,
        vmpl: 0,
        sig_algo: 1,
        signing_key: "vcek",
        platform_info: "0x25",
        current_tcb: Tcb { raw: 0xde1b000000000004, bl: 4, tee: 0, snp: 27, ucode: 222 },
        reported_tcb: Tcb { raw: 0xde1b000000000004, bl: 4, tee: 0, snp: 27, ucode: 222 },
        launch_tcb: Tcb { raw: 0xde1b000000000004, bl: 4, tee: 0, snp: 27, ucode: 222 },
        committed_tcb: Tcb { raw: 0xde1b000000000004, bl: 4, tee: 0, snp: 27, ucode: 222 },
        fw: (1, 55, 35),
        cpuid: Some((0x19, 0x01, 0x01)),
        family_id: "00000000000000000000000000000000",
        image_id: "00000000000000000000000000000000",
        report_data: "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        measurement: "b747d55452e0b9e9079770a49e397c5e6d9573581e246da7baac4f28b5cdc5b1b6d19251b8ee600fd16a3708f58406f3",
        host_data: "0000000000000000000000000000000000000000000000000000000000000000",
        id_key_digest: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        report_id: "9a0603343e711e1ec9b6b046023da5378e7c4cac6182e35d4f3ebeb46aef6c80",
        chip_id: "980cf7b61876cb37fd517cd44ce11c72d43c5408e66ab39138370ec59bc195e063254cb501d87d82f0b8b8dc774bcfe28019447711598f007390e4accc405361",
        mit_vector: Some("0xb"),
        sha256: "bcc3fbc503cb42e1d6a03dfe5cbc79d5fcc2838f72c8b0e96d5bd42e1a47019b",
    },
    SnpExpect {
        file: "snp/teekit-sev-gcp-x25519-bound.bin",
        vek: "snp/teekit-sev-gcp-x25519-vcek.pem",
        version: 5,
        guest_svn: 0,
        policy: "0x30000",
        abi_minor: 0,
        abi_major: 0,
        smt: true,
        migrate_ma: false,
        debug: false,
        single_socket: false,
        vmpl: 1,
        sig_algo: 1,
        signing_key: "vcek",
        platform_info: "0x25",
        current_tcb: Tcb { raw: 0xde1b000000000004, bl: 4, tee: 0, snp: 27, ucode: 222 },
        reported_tcb: Tcb { raw: 0xde1b000000000004, bl: 4, tee: 0, snp: 27, ucode: 222 },
        launch_tcb: Tcb { raw: 0xde1b000000000004, bl: 4, tee: 0, snp: 27, ucode: 222 },
        committed_tcb: Tcb { raw: 0xde1b000000000004, bl: 4, tee: 0, snp: 27, ucode: 222 },
        fw: (1, 55, 35),
        cpuid: Some((0x19, 0x01, 0x01)),
        family_id: "00000000000000000000000000000000",
        image_id: "00000000000000000000000000000000",
        report_data: "3a6753fd4b194de53824d7fd5b45e251cc19a32a71dd5ba3e131fe19f2adbe86d658c147479571226e0f294eb7e44abb6c1673f39a5378ac25cd5d6268b91f1a",
        measurement: "b747d55452e0b9e9079770a49e397c5e6d9573581e246da7baac4f28b5cdc5b1b6d19251b8ee600fd16a3708f58406f3",
        host_data: "0000000000000000000000000000000000000000000000000000000000000000",
        id_key_digest: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        report_id: "9a0603343e711e1ec9b6b046023da5378e7c4cac6182e35d4f3ebeb46aef6c80",
        chip_id: "980cf7b61876cb37fd517cd44ce11c72d43c5408e66ab39138370ec59bc195e063254cb501d87d82f0b8b8dc774bcfe28019447711598f007390e4accc405361",
        mit_vector: Some("0xb"),
        sha256: "19a94fdb834da30eb1901e37ef52547ef2bed76adeb7c91fd0a7ad4f816c19ba",
    },
    SnpExpect {
        file: "snp/azure-genoa-snp-report-from-hcl.bin",
        vek: "other/azure-snp-vtpm/vcek-genoa.pem",
        version: 3,
        guest_svn: 65547,
        policy: "0x3001f",
        abi_minor: 31,
        abi_major: 0,
        smt: true,
        migrate_ma: false,
        debug: false,
        single_socket: false,
        vmpl: 0,
        sig_algo: 1,
        signing_key: "vcek",
        platform_info: "0x24",
        current_tcb: Tcb { raw: 0x541700000000000a, bl: 10, tee: 0, snp: 23, ucode: 84 },
        reported_tcb: Tcb { raw: 0x541700000000000a, bl: 10, tee: 0, snp: 23, ucode: 84 },
        launch_tcb: Tcb { raw: 0x541700000000000a, bl: 10, tee: 0, snp: 23, ucode: 84 },
        committed_tcb: Tcb { raw: 0x541700000000000a, bl: 10, tee: 0, snp: 23, ucode: 84 },
        fw: (1, 55, 40),
        cpuid: Some((0x19, 0x11, 0x01)),
        family_id: "01232000000000000000000000000000",
        image_id: "02000000000000000000000000000000",
        report_data: "b581f12e29a2d7d64e5e0b738d563879a78b51c644d0fa0cce02b48699f6bf5f0000000000000000000000000000000000000000000000000000000000000000",
        measurement: "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae",
        host_data: "0000000000000000000000000000000000000000000000000000000000000000",
        id_key_digest: "942fd93ebde6ea7a96efadeafc60f1c6b3d10e703b1dafd7555b92f7f3d32d0e006767648cba5b102af3d65756af4177",
        report_id: "8c678f0cba548b25bc8ed1f723231570447886c74b1fa1f7eb23699755cb4801",
        chip_id: "0506ffba875e939c2729d20c74eb72b4c5ba6bf7ea1faaa640141f12c6d64782fb487f68ce69dcd021e914cc0d9244327bc121f0242d6470903ad1d4aaea4ad1",
        mit_vector: None,
        sha256: "227a641db25e82ae50344a548bdb8497ddcbb4783d67012b56d2c052ac57b4ad",
    },
];
const TDX: &[TdxExpect] = &[
    TdxExpect {
        file: "tdx/gotdxguest-quote-v4-SPR-E4.dat",
        size: 4974,
        version: 4,
        att_key_type: 2,
        qe_vendor_id: "939a7233f79c4ca9940a0db3957f0607",
        user_data: "739c3f292a15bace1f726351a70d4b7900000000",
        body_type: None,
        sig_len: 4299,
        trailing: 39,
        trailing_nonzero: true,
        tee_tcb_svn: "03000400000000000000000000000000",
        mr_seam: "2fd279c16164a93dd5bf373d834328d46008c2b693af9ebb865b08b2ced320c9a89b4869a9fab60fbe9d0c5a5363c656",
        td_attributes: "0000004000000000",
        xfam: "e71a060000000000",
        mr_td: "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb",
        mr_config_id: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner_config: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        rtmr: [
            "2927da70461cd63266f43230cc1849c03ef25ebe490062a801d8fcc80af42976823adf08f833c1e50b51779c6593f32a",
            "2c700b8ba9b85783f8be9fb9443647bdc0bb3c50747f06297cc6538c25a5f589c4b56d035c59107c6bc5800db2cacb61",
            "8652f0caaba7e215ea442dc36a4499d8fec3362f3a0b2ca151cbe4b3e6466fe59c7368b3c2287fc7c3bf5c924eb4424e",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ],
        report_data: "6c62dec1b8191749a31dab490be532a35944dea47caef1f980863993d9899545eb7406a38d1eed313b987a467dacead6f0c87a6d766c66f6f29f8acb281f1113",
        tee_tcb_svn2: None,
        mr_servicetd: None,
        sha256: "6dde5548bec99147fef832643301f113df99931547be26df8ac376c4eaa5b5a7",
    },
    TdxExpect {
        file: "tdx/trustee-tdx-quote-v4.dat",
        size: 4936,
        version: 4,
        att_key_type: 2,
        qe_vendor_id: "939a7233f79c4ca9940a0db3957f0607",
        user_data: "d099bfec0a477aa85a605dceabf2b10800000000",
        body_type: None,
        sig_len: 4300,
        trailing: 0,
        trailing_nonzero: false,
        tee_tcb_svn: "03000500000000000000000000000000",
        mr_seam: "2fd279c16164a93dd5bf373d834328d46008c2b693af9ebb865b08b2ced320c9a89b4869a9fab60fbe9d0c5a5363c656",
        td_attributes: "0100001000000000",
        xfam: "e742060000000000",
        mr_td: "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031",
        mr_config_id: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner_config: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        rtmr: [
            "e940da7c2712d2790e2961e00484f4fa8e6f9eed71361655ae22699476b14f9e63867eb41edd4b480fef0c59f496b288",
            "559cfcf42716ed6c40a48a73d5acb7da255435012f0a9f00fbe8c1c57612ede486a5684c4c9ff3ddf52315fcdca3a596",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ],
        report_data: "7c71fe2c86eff65a7cf8dbc22b3275689fd0464a267baced1bf94fc1324656aeb755da3d44d098c0c87382f3a5f85b45c8a28fee1d3bdb38342bf96671501429",
        tee_tcb_svn2: None,
        mr_servicetd: None,
        sha256: "12b401a88a51edb2d12cac4db0c6b8668a163960fbf848c16889a40955f946a9",
    },
    TdxExpect {
        file: "tdx/cos-113/cos-113-tdx-quote.dat",
        size: 8000,
        version: 4,
        att_key_type: 2,
        qe_vendor_id: "939a7233f79c4ca9940a0db3957f0607",
        user_data: "0000000000000000000000000000000000000000",
        body_type: None,
        sig_len: 4299,
        trailing: 3065,
        trailing_nonzero: false,
        tee_tcb_svn: "04010700000000000000000000000000",
        mr_seam: "ffc97a88587660fb04e1f7c851300c96ae0b5a463ac46d035d16c2d9f36d0ed1d23775bcbd27deb219e3a3cc28023895",
        td_attributes: "0000001000000000",
        xfam: "e700060000000000",
        mr_td: "dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a",
        mr_config_id: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner_config: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        rtmr: [
            "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6",
            "f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1",
            "4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ],
        report_data: "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        tee_tcb_svn2: None,
        mr_servicetd: None,
        sha256: "54334c81b4e03634ab3a269ad397c9cea3b5c9ee96c57505b684470b964fd15e",
    },
    TdxExpect {
        file: "tdx/teekit-gcp-tdx-quote-v4.dat",
        size: 8000,
        version: 4,
        att_key_type: 2,
        qe_vendor_id: "939a7233f79c4ca9940a0db3957f0607",
        user_data: "0000000000000000000000000000000000000000",
        body_type: None,
        sig_len: 4299,
        trailing: 3065,
        trailing_nonzero: false,
        tee_tcb_svn: "08010800000000000000000000000000",
        mr_seam: "bfb360ac8e6233a1bca1433caf7382d95c165b4a77fb00bf1435e5a08f300cdfead5ee68461afd9b6c728dce7534602d",
        td_attributes: "0000001000000000",
        xfam: "e700060000000000",
        mr_td: "409c0cd3e63d9ea54d817cf851983a220131262664ac8cd02cc6a2e19fd291d2fdd0cc035d7789b982a43a92a4424c99",
        mr_config_id: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner_config: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        rtmr: [
            "9d112d1d2c2546d904629cfad72ccfa0096be6b040ea2eec7a0673827633ebdcd7f89c2c355dd6dd4fa811ce0f442d3a",
            "349c9f4827767091eb5c5efdcea78dca9161a41e5b456b707db39b026273723f63540aadc124124d6f0134030ebedabb",
            "2a514f6213e05aeac690ea1a4275cdef2af6277d688ff436d0ff7efaf47dc4a4f62a5d91cd2bf5f91838744069d1a0b8",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ],
        report_data: "806dfeec9d10c22a60b12751216d75fb358d83088ea72dd07eb49c84de24b8a49d483085c4350e545689955bdd10e1d8b55ef7c6d288a17032acece698e35db8",
        tee_tcb_svn2: None,
        mr_servicetd: None,
        sha256: "442fa0202873dc35751ea189d36f38ed94cf3bc9220129c2437d449b2fc90e8d",
    },
    TdxExpect {
        file: "tdx/trustee-tdx-quote-6.dat",
        size: 5006,
        version: 4,
        att_key_type: 2,
        qe_vendor_id: "939a7233f79c4ca9940a0db3957f0607",
        user_data: "5bd9e09e6e0bbcd3f9cc4d7c9295764a00000000",
        body_type: None,
        sig_len: 4300,
        trailing: 70,
        trailing_nonzero: false,
        tee_tcb_svn: "05030200000000000000000000000000",
        mr_seam: "476a2997c62bccc78370913d0a80b956e3721b24272bc66c4d6307ced4be2865c40e26afac75f12df3425b03eb59ea7c",
        td_attributes: "0000001000000000",
        xfam: "e702060000000000",
        mr_td: "21e8dead92d6c69d7cbba79816686c03a48485c7df0c11f6f04792d5e1d378f6b8c46615ba6946adccac6becffbb1e88",
        mr_config_id: "889abf4718f037e38d74464c11e7c91a6e9890b5546409e1e7df9de7a51ca93152bf847bd2440328e90adb18b150ed67",
        mr_owner: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner_config: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        rtmr: [
            "395aefe7bac15b24c40f1cd7ba6f8fa48732be5c56c61485ed3cd9c8b16cce8ece64c331b99ce36d96605135c753aaa2",
            "fc4b0f849d8d76fdf1da563a8c29d0d456b484a65e01797baf52ea1d8c002040527a1f0278925077219656dba039429f",
            "193edd321148e81fd4d6ce00ac8331e737febdb428f18ae66f697c1d2a7f2cd97c535c8df9f045f62b16a41facad84a1",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ],
        report_data: "26cae1c77185617fb6a03fc29bf1f924596e52352b9b7594940b576ae126cd4a570cc3202a900c5d19a6eb0a95b32cfd00000000000000000000000000000000",
        tee_tcb_svn2: None,
        mr_servicetd: None,
        sha256: "62657e5976da7686fc72f3b76f72c0cff830aef0b862a9a7dd96fded487b33f7",
    },
    TdxExpect {
        file: "other/azure-tdx-vtpm/td-quote.bin",
        size: 5006,
        version: 4,
        att_key_type: 2,
        qe_vendor_id: "939a7233f79c4ca9940a0db3957f0607",
        user_data: "f17eac112e4cd9a0fafce1b46b5af18f00000000",
        body_type: None,
        sig_len: 4300,
        trailing: 70,
        trailing_nonzero: false,
        tee_tcb_svn: "02010600000000000000000000000000",
        mr_seam: "360304d34a16aace0a18e09ad2d07d2b9fd3c174378e5bf108388079827f89ff62acc5f8c473dd40706324834e202946",
        td_attributes: "0000000000000000",
        xfam: "e718060000000000",
        mr_td: "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b",
        mr_config_id: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner_config: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        rtmr: [
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ],
        report_data: "9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e5938390000000000000000000000000000000000000000000000000000000000000000",
        tee_tcb_svn2: None,
        mr_servicetd: None,
        sha256: "a2c43c6937dcdb91403844f371acc26e39c4937951e61fbd2c8ecd18969f9e6f",
    },
    TdxExpect {
        file: "tdx/gotdxguest-quote-v5-sample.dat",
        size: 5006,
        version: 5,
        att_key_type: 2,
        qe_vendor_id: "939a7233f79c4ca9940a0db3957f0607",
        user_data: "ba103c0e5dffa40351f9d5dd559888eb00000000",
        body_type: Some(3),
        sig_len: 4300,
        trailing: 0,
        trailing_nonzero: false,
        tee_tcb_svn: "0b010400000000000000000000000000",
        mr_seam: "7bf063280e94fb051f5dd7b1fc59ce9aac42bb961df8d44b709c9b0ff87a7b4df648657ba6d1189589feab1d5a3c9a9d",
        td_attributes: "0000001000000000",
        xfam: "e702060000000000",
        mr_td: "7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876",
        mr_config_id: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner_config: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        rtmr: [
            "5c8daf76063a71ac8fcef4067564661fc682ed7944c7a5d21dbbced02f61ceff4ba0678c6aef3bdae8cbc614cec24619",
            "463acaace1b6e97c76e92e41fe312aa66f3fd4dad60ec7acf169859db0343e3d1e591646795cdc80fbc0ca5f7041d253",
            "6369b9c9a3b791ebcbdc5a0bb9536cfb57f50df2b393b33c8b29616d3568baa61f4b59dc6092e31ea8764bcbdfc69f20",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ],
        report_data: "945eaacf5abc1f719d8666a942fda03d1edcb4490277396093dc5a5289ab9f1e094aed63060cd4a4933a4dd537ed1255c9c79ecb3ed82cd1b486233e31c25c3a",
        tee_tcb_svn2: Some("0d010400000000000000000000000000"),
        mr_servicetd: Some("000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"),
        sha256: "cf77a6e91e48291d5d338c5f3b5d0674225a4d13e7d83ff5e537a4914bf22e1d",
    },
    TdxExpect {
        file: "tdx/trustee-tdx-quote-v5.dat",
        size: 5006,
        version: 5,
        att_key_type: 2,
        qe_vendor_id: "939a7233f79c4ca9940a0db3957f0607",
        user_data: "da2c7e326c5696889a6a6ab4f8a64b1700000000",
        body_type: Some(3),
        sig_len: 4300,
        trailing: 0,
        trailing_nonzero: false,
        tee_tcb_svn: "05010200000000000000000000000000",
        mr_seam: "1cc6a17ab799e9a693fac7536be61c12ee1e0fabada82d0c999e08ccee2aa86de77b0870f558c570e7ffe55d6d47fa04",
        td_attributes: "0000001000000000",
        xfam: "e742060000000000",
        mr_td: "dfba221b48a22af8511542ee796603f37382800840dcd978703909bf8e64d4c8a1e9de86e7c9638bfcba422f3886400a",
        mr_config_id: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        mr_owner_config: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        rtmr: [
            "9b529f3689e2e8ebb899e9abbbc3dab394d6545e8cdb28a2abb9cc2f377b83a65c01ba56b824cd3ee885df20051f5128",
            "ca5a979317ffe8a527a3b7aadab03976d7cb6eef1041fb9bd9d69e6fafa7252cdc10e4c2a55e7ecbd2ddb5cacc867430",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ],
        report_data: "6d6ab13b046cff606ac0074be13981b07b6325dba10b5facc96febf551c0c3be2b75f92fe1f88f4bb996969ad0174b4b7a70261b7b85c844f4b33a4674fd049f",
        tee_tcb_svn2: Some("05010200000000000000000000000000"),
        mr_servicetd: Some("383c87d3bbb047b2d171eaca95312ede99f258088dc788f6ae2ccf8b6dd848fe8d47629e08b3f6cbd4a00dd47a5a033d"),
        sha256: "586c2be0dc38d3c5653ecf91a0a482d8dbfaf3d3a0bcea2947bc2d321c8108a2",
    },
];

// ---------------------------------------------------------------------------
// SNP: decoding

/// The product each sample comes from, as SOURCES.md states it.
fn sources_product(file: &str) -> SnpProduct {
    if file.contains("genoa") {
        SnpProduct::Genoa
    } else {
        SnpProduct::Milan
    }
}

fn assert_tcb(ctx: &str, what: &str, got: &serde_json::Value, exp: &Tcb) {
    let c = format!("{ctx}: {what}");
    assert_eq!(got["raw"], format!("{:#x}", exp.raw), "{c}");
    assert_eq!(got["bootloader"], exp.bl, "{c}");
    assert_eq!(got["tee"], exp.tee, "{c}");
    assert_eq!(got["snp"], exp.snp, "{c}");
    assert_eq!(got["microcode"], exp.ucode, "{c}");
    // Every sample is Milan or Genoa: no FMC field.
    assert!(got.get("fmc").is_none(), "{c}");
}

#[test]
fn every_snp_report_decodes_to_the_documented_values() {
    assert_eq!(SNP.len(), 8, "SOURCES.md lists 8 raw SNP reports");
    for e in SNP {
        let ctx = e.file;
        let bytes = read_checked(e.file, e.sha256);
        assert_eq!(bytes.len(), 1184, "{ctx}");
        let r = snp::parse_report(&bytes).unwrap_or_else(|err| panic!("{ctx}: {err}"));
        let s = serde_json::to_value(r.summary()).unwrap();

        assert_eq!(s["tee"], "snp", "{ctx}");
        assert_eq!(s["version"], e.version, "{ctx}");
        assert_eq!(s["guest_svn"], e.guest_svn, "{ctx}");
        assert_eq!(s["policy"]["raw"], e.policy, "{ctx}");
        assert_eq!(s["policy"]["abi_minor"], e.abi_minor, "{ctx}");
        assert_eq!(s["policy"]["abi_major"], e.abi_major, "{ctx}");
        assert_eq!(s["policy"]["smt"], e.smt, "{ctx}");
        assert_eq!(s["policy"]["migrate_ma"], e.migrate_ma, "{ctx}");
        assert_eq!(s["policy"]["debug"], e.debug, "{ctx}");
        assert_eq!(s["policy"]["single_socket"], e.single_socket, "{ctx}");
        assert_eq!(s["debug"], e.debug, "{ctx}");
        assert_eq!(s["vmpl"], e.vmpl, "{ctx}");
        assert_eq!(s["sig_algo"], e.sig_algo, "{ctx}");
        assert_eq!(s["signing_key"], e.signing_key, "{ctx}");
        assert_eq!(s["platform_info"]["raw"], e.platform_info, "{ctx}");
        assert_tcb(ctx, "current_tcb", &s["current_tcb"], &e.current_tcb);
        assert_tcb(ctx, "reported_tcb", &s["reported_tcb"], &e.reported_tcb);
        assert_tcb(ctx, "launch_tcb", &s["launch_tcb"], &e.launch_tcb);
        assert_tcb(ctx, "committed_tcb", &s["committed_tcb"], &e.committed_tcb);
        assert_eq!(s["tcb_layout"], "milan_genoa", "{ctx}");
        let fw = &s["current_version"];
        assert_eq!(
            (&fw["major"], &fw["minor"], &fw["build"]),
            (&e.fw.0.into(), &e.fw.1.into(), &e.fw.2.into()),
            "{ctx}"
        );
        match e.cpuid {
            Some((fam, model, step)) => {
                assert_eq!(s["cpuid"]["family"], fam, "{ctx}");
                assert_eq!(s["cpuid"]["model"], model, "{ctx}");
                assert_eq!(s["cpuid"]["stepping"], step, "{ctx}");
                let want = serde_json::to_value(sources_product(e.file)).unwrap();
                assert_eq!(s["product"], want, "{ctx}");
                assert_eq!(r.product(), Some(sources_product(e.file)), "{ctx}");
            }
            None => {
                assert!(s.get("cpuid").is_none(), "{ctx}: v2 has no CPUID fields");
                assert!(s.get("product").is_none(), "{ctx}");
            }
        }
        assert_eq!(s["family_id"], e.family_id, "{ctx}");
        assert_eq!(s["image_id"], e.image_id, "{ctx}");
        assert_eq!(s["report_data"], e.report_data, "{ctx}");
        assert_eq!(s["measurement"], e.measurement, "{ctx}");
        assert_eq!(s["host_data"], e.host_data, "{ctx}");
        assert_eq!(s["id_key_digest"], e.id_key_digest, "{ctx}");
        assert_eq!(s["report_id"], e.report_id, "{ctx}");
        assert_eq!(s["chip_id"], e.chip_id, "{ctx}");
        match e.mit_vector {
            Some(m) => {
                assert_eq!(s["launch_mit_vector"], m, "{ctx}");
                assert_eq!(s["current_mit_vector"], m, "{ctx}");
            }
            None => assert!(s.get("launch_mit_vector").is_none(), "{ctx}"),
        }

        // Typed accessors used by the broker's binding check.
        assert_eq!(hex::encode(r.measurement()), e.measurement, "{ctx}");
        assert_eq!(hex::encode(r.report_data()), e.report_data, "{ctx}");
        assert_eq!(hex::encode(r.host_data()), e.host_data, "{ctx}");
        assert_eq!(r.debug(), e.debug, "{ctx}");
        assert_eq!(r.version(), e.version, "{ctx}");
        assert_eq!(r.reported_tcb().raw, e.reported_tcb.raw, "{ctx}");

        // decode() sniffs it as SNP and gives the same answers.
        let d = decode(&bytes).unwrap_or_else(|err| panic!("{ctx}: {err}"));
        assert!(matches!(d, Decoded::Snp(_)), "{ctx}");
        assert_eq!(d.tee(), "snp");
        assert_eq!(hex::encode(d.report_data()), e.report_data, "{ctx}");
        assert_eq!(hex::encode(d.measurement()), e.measurement, "{ctx}");
        assert_eq!(d.debug(), e.debug, "{ctx}");
        assert_eq!(d.summary_json(), s, "{ctx}");
        let text = d.to_string();
        assert!(
            text.contains(e.measurement),
            "{ctx}: Display shows the measurement"
        );
        assert_eq!(
            text.contains("WARNING"),
            e.debug,
            "{ctx}: Display warns about DEBUG"
        );
    }
}

#[test]
fn hex_report_decodes_like_the_binary() {
    let text = read("snp/virtee-milan-report.hex");
    assert_eq!(text.len(), 2368);
    let from_hex = decode(&text).unwrap();
    let bin = decode(&read("snp/virtee-milan-report.bin")).unwrap();
    assert_eq!(from_hex.summary_json(), bin.summary_json());
    assert_eq!(
        hex::encode(from_hex.measurement()),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
}

/// Values stated by go-sev-guest's own tests (check_test.go, verify_test.go).
#[test]
fn gosevguest_report_matches_upstream_assertions() {
    let r = snp::parse_report(&read("snp/gosevguest-milan-report.bin")).unwrap();
    let mut rd = [0u8; 64];
    rd[..5].copy_from_slice(&[1, 2, 3, 4, 5]);
    assert_eq!(r.report_data(), &rd);
    assert_eq!(r.report().report_id_ma, [0xFF; 32]);
    assert_eq!(r.report().host_data, [0; 32]);
    assert_eq!(r.report().family_id, [0; 16]);
    assert_eq!(r.report().image_id, [0; 16]);
    assert_eq!(r.reported_tcb().raw, 4_901_323_769_462_652_930);
    let t = r.reported_tcb();
    assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), (2, 0, 5, 68));
    assert!(r.debug(), "policy = {{Debug, SMT}}");
    assert!(r.report().policy.smt_allowed());
    assert_eq!(r.report().vmpl, 0);
    assert!(!r.report().key_info.author_key_en(), "no author key");
    assert_eq!(r.report().id_key_digest, [0; 48], "no ID block");
    assert!(hex::encode(r.report().chip_id).starts_with("3ac3fe21"));
    assert!(hex::encode(r.report().chip_id).ends_with("8b006b5d"));
}

/// teekit's GCP sample binds SHA-512(nonce || x25519 public key) into REPORT_DATA.
#[test]
fn gcp_report_data_binds_nonce_and_key() {
    let txt = String::from_utf8(read("snp/teekit-sev-gcp-x25519-bound.txt")).unwrap();
    let field = |k: &str| {
        let line = txt.lines().find(|l| l.starts_with(k)).unwrap();
        hex::decode(line.split_once('=').unwrap().1.trim()).unwrap()
    };
    let (nonce, key) = (field("NONCE="), field("X25519_KEY="));
    assert_eq!((nonce.len(), key.len()), (32, 32));
    let want: [u8; 64] = Sha512::new()
        .chain_update(&nonce)
        .chain_update(&key)
        .finalize()
        .into();
    let d = decode(&read("snp/teekit-sev-gcp-x25519-bound.bin")).unwrap();
    assert_eq!(d.report_data(), &want);
}

// ---------------------------------------------------------------------------
// SNP: verification

const MILAN_ASVK_BUNDLE: &str = "snp/amd-milan-ask-ark-asvk.pem";

fn parse(file: &str) -> snp::SnpReport {
    snp::parse_report(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn link_of(e: &EvidenceError) -> Option<ChainLink> {
    match e {
        EvidenceError::ChainLinkFailed { link, .. } => Some(*link),
        _ => None,
    }
}

#[test]
fn every_snp_report_verifies_with_its_endorsement_key() {
    for e in SNP {
        let r = parse(e.file);
        let vek = read(e.vek);
        let vlek = e.signing_key == "vlek";
        let asvk = read(MILAN_ASVK_BUNDLE);
        let by = snp::verify_report(&r, &vek, vlek.then_some(&asvk[..]), None)
            .unwrap_or_else(|err| panic!("{}: {err}", e.file));
        assert_eq!(by.product, sources_product(e.file), "{}", e.file);
        let (key, roots) = if vlek {
            (SigningKey::Vlek, snp::RootSource::Supplied)
        } else {
            (SigningKey::Vcek, snp::RootSource::BuiltIn)
        };
        assert_eq!(by.signing_key, key, "{}", e.file);
        assert_eq!(by.roots, roots, "{}", e.file);
    }
}

#[test]
fn verified_by_reports_the_certificate_product_name() {
    let by = snp::verify_report(
        &parse("snp/trustee-milan-vcek-report.bin"),
        &read("snp/trustee-milan-vcek.der"),
        None,
        None,
    )
    .unwrap();
    assert_eq!(by.vek_product_name.as_deref(), Some("Milan-B0"));
    assert!(by.vek_not_after.contains("2030"), "{}", by.vek_not_after);

    let by = snp::verify_report(
        &parse("snp/trustee-genoa-vcek-report.bin"),
        &read("snp/trustee-genoa-vcek.der"),
        None,
        None,
    )
    .unwrap();
    assert_eq!(by.vek_product_name.as_deref(), Some("Genoa"));
}

#[test]
fn explicit_ask_and_ark_files_and_bundles_verify() {
    let r = parse("snp/virtee-milan-report.bin");
    let vcek = read("snp/virtee-milan-vcek.der");
    let (ask, ark) = (read("snp/amd-milan-ask.pem"), read("snp/amd-milan-ark.pem"));
    let by = snp::verify_report(&r, &vcek, Some(&ask), Some(&ark)).unwrap();
    assert_eq!(
        (by.product, by.roots),
        (SnpProduct::Milan, snp::RootSource::Supplied)
    );
    // KDS cert_chain (ASK then ARK) as the ASK argument.
    snp::verify_report(&r, &vcek, Some(&read("snp/amd-milan-cert_chain.pem")), None).unwrap();
    // The ASK/ARK/ASVK bundle works for a VCEK too (the ASK is picked).
    snp::verify_report(&r, &vcek, Some(&read(MILAN_ASVK_BUNDLE)), None).unwrap();
    // Only the ASK given: the built-in Milan ARK completes the chain.
    snp::verify_report(&r, &vcek, Some(&ask), None).unwrap();

    let g = parse("snp/trustee-genoa-vcek-report.bin");
    let gv = read("snp/trustee-genoa-vcek.der");
    snp::verify_report(&g, &gv, Some(&read("snp/amd-genoa-cert_chain.pem")), None).unwrap();
    snp::verify_report(
        &g,
        &gv,
        Some(&read("snp/amd-genoa-ask.pem")),
        Some(&read("snp/amd-genoa-ark.pem")),
    )
    .unwrap();
}

#[test]
fn azure_hcl_inner_report_verifies_with_the_bundled_vcek() {
    // SOURCES.md: bytes 0x20..0x4C0 of the HCL report are the raw SNP report.
    let hcl = read("other/azure-snp-vtpm/hcl-report.bin");
    assert_eq!(hcl.len(), 2600);
    let e = decode(&hcl).unwrap_err().to_string();
    assert!(e.contains("HCL report") && e.contains("0x20..0x4C0"), "{e}");

    let r = snp::parse_report(&hcl[0x20..0x4C0]).unwrap();
    let s = r.summary();
    assert_eq!(s.version, 2);
    assert_eq!(s.policy.raw, "0x3001f");
    let t = r.reported_tcb();
    assert_eq!((t.bootloader, t.snp, t.microcode), (3, 8, 115));
    assert!(s.measurement.starts_with("9ac48fca") && s.measurement.ends_with("6d17c315"));
    // vcek.pem is VCEK + ASK + ARK in one file.
    let by = snp::verify_report(&r, &read("other/azure-snp-vtpm/vcek.pem"), None, None).unwrap();
    assert_eq!(
        (by.product, by.roots),
        (SnpProduct::Milan, snp::RootSource::Supplied)
    );
}

#[test]
fn vlek_needs_the_asvk() {
    let r = parse("snp/trustee-milan-vlek-report.bin");
    let vlek = read("snp/trustee-milan-vlek.der");
    let e = snp::verify_report(&r, &vlek, None, None).unwrap_err();
    assert!(
        matches!(e, EvidenceError::MissingCertificate { what: "ASVK", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("ask-ark-asvk"), "{e}");
    // A plain ASK/ARK chain has no ASVK either.
    let e = snp::verify_report(&r, &vlek, Some(&read("snp/amd-milan-cert_chain.pem")), None)
        .unwrap_err();
    assert!(
        matches!(e, EvidenceError::MissingCertificate { what: "ASVK", .. }),
        "{e:?}"
    );
    // The Genoa ASVK does not sign a Milan VLEK.
    let e = snp::verify_report(
        &r,
        &vlek,
        Some(&read("snp/amd-genoa-ask-ark-asvk.pem")),
        None,
    )
    .unwrap_err();
    assert_eq!(link_of(&e), Some(ChainLink::AskSignsVek), "{e}");
}

#[test]
fn signing_key_type_must_match_the_certificate() {
    let vlek_report = parse("snp/trustee-milan-vlek-report.bin");
    let e = snp::verify_report(
        &vlek_report,
        &read("snp/trustee-milan-vcek.der"),
        None,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(e, EvidenceError::SigningKeyMismatch { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("signed by the VLEK"), "{e}");

    let vcek_report = parse("snp/trustee-milan-vcek-report.bin");
    let asvk = read(MILAN_ASVK_BUNDLE);
    let e = snp::verify_report(
        &vcek_report,
        &read("snp/trustee-milan-vlek.der"),
        Some(&asvk),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(e, EvidenceError::SigningKeyMismatch { .. }),
        "{e:?}"
    );
}

#[test]
fn invalid_vceks_fail_at_the_ask_link() {
    let r = parse("snp/trustee-milan-vcek-report.bin");
    for f in [
        "snp/trustee-vcek-invalid-legacy.der",
        "snp/trustee-vcek-invalid-new.der",
    ] {
        let e = snp::verify_report(&r, &read(f), None, None).unwrap_err();
        assert_eq!(link_of(&e), Some(ChainLink::AskSignsVek), "{f}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("ASK/ASVK signs VCEK/VLEK") && msg.contains("Milan"),
            "{f}: {msg}"
        );
        // The chain alone fails the same way.
        let e = snp::verify_vek_chain(&read(f), None, None).unwrap_err();
        assert_eq!(link_of(&e), Some(ChainLink::AskSignsVek), "{f}: {e}");
    }
}

#[test]
fn wrong_vcek_fails_at_the_report_signature() {
    let cases = [
        ("snp/virtee-milan-report.bin", "snp/trustee-milan-vcek.der"),
        (
            "snp/trustee-milan-vcek-report.bin",
            "snp/gosevguest-milan-vcek.der",
        ),
        ("snp/teekit-sev-gcp.bin", "snp/virtee-milan-vcek.der"),
        (
            "snp/trustee-genoa-vcek-report.bin",
            "other/azure-snp-vtpm/vcek-genoa.pem",
        ),
    ];
    for (report, vcek) in cases {
        let e = snp::verify_report(&parse(report), &read(vcek), None, None).unwrap_err();
        assert_eq!(
            link_of(&e),
            Some(ChainLink::VekSignsReport),
            "{report} with {vcek}: {e}"
        );
        assert!(e.to_string().contains("VCEK/VLEK signs the report"), "{e}");
    }
}

#[test]
fn wrong_product_chain_fails_at_the_named_link() {
    let r = parse("snp/trustee-genoa-vcek-report.bin");
    let vcek = read("snp/trustee-genoa-vcek.der");
    // Milan ASK+ARK for a Genoa VCEK: the ASK does not sign it.
    let e = snp::verify_report(&r, &vcek, Some(&read("snp/amd-milan-cert_chain.pem")), None)
        .unwrap_err();
    assert_eq!(link_of(&e), Some(ChainLink::AskSignsVek), "{e}");
    // Milan ASK with the Genoa ARK: the ARK does not sign the ASK.
    let e = snp::verify_report(
        &parse("snp/virtee-milan-report.bin"),
        &read("snp/virtee-milan-vcek.der"),
        Some(&read("snp/amd-milan-ask.pem")),
        Some(&read("snp/amd-genoa-ark.pem")),
    )
    .unwrap_err();
    assert_eq!(link_of(&e), Some(ChainLink::ArkSignsAsk), "{e}");
}

#[test]
fn any_changed_signed_byte_breaks_the_signature() {
    // (report, vcek, byte offsets to flip). 42 and 384 are the ones
    // SOURCES.md names for the trustee pair; 21 for virtee. 0x1F7 is the
    // last non-reserved signed byte of a v2 report (LAUNCH_TCB microcode);
    // 0x2A0 is in R, 0x2A0 + 60 in R's zero padding.
    let cases: [(&str, &str, &[usize]); 3] = [
        (
            "snp/trustee-milan-vcek-report.bin",
            "snp/trustee-milan-vcek.der",
            &[42, 384, 0x1F7, 0x2A0, 0x2A0 + 60],
        ),
        (
            "snp/virtee-milan-report.bin",
            "snp/virtee-milan-vcek.der",
            &[21, 0x90, 0x50],
        ),
        (
            "snp/teekit-sev-gcp.bin",
            "snp/teekit-sev-gcp-vcek.pem",
            &[0x1F8, 0x200, 0x30],
        ),
    ];
    for (file, vcek, offsets) in cases {
        let vcek = read(vcek);
        let good = read(file);
        snp::verify_report(&snp::parse_report(&good).unwrap(), &vcek, None, None).unwrap();
        for &off in offsets {
            let mut bad = good.clone();
            bad[off] ^= 0x80;
            let r = snp::parse_report(&bad).unwrap_or_else(|e| panic!("{file}[{off:#x}]: {e}"));
            let e = snp::verify_report(&r, &vcek, None, None).expect_err(&format!(
                "{file} with byte {off:#x} flipped must not verify"
            ));
            assert_eq!(
                link_of(&e),
                Some(ChainLink::VekSignsReport),
                "{file}[{off:#x}]: {e}"
            );
        }
    }
}

#[test]
fn nonzero_reserved_bytes_are_rejected() {
    // 0x4C (after KEY_INFO) and 0x1A0 - 1 (before CHIP_ID) are reserved in
    // every version; the sev decoder refuses non-zero reserved bytes, so
    // such a report never reaches signature verification.
    let good = read("snp/trustee-milan-vcek-report.bin");
    for off in [0x4C, 0x19F] {
        let mut bad = good.clone();
        bad[off] = 1;
        let e = snp::parse_report(&bad).unwrap_err();
        assert!(
            matches!(e, EvidenceError::SnpDecode { version: 2, .. }),
            "{off:#x}: {e:?}"
        );
        assert!(e.to_string().contains("reserved"), "{e}");
    }
}

#[test]
fn truncated_and_oversized_reports_name_the_sizes() {
    let good = read("snp/trustee-milan-vcek-report.bin");
    let mut long = good.clone();
    long.push(0);
    for (bytes, actual) in [(&good[..1183], 1183usize), (&long[..], 1185)] {
        for e in [
            snp::parse_report(bytes).unwrap_err(),
            decode(bytes).unwrap_err(),
        ] {
            assert!(
                matches!(e, EvidenceError::SnpWrongSize { actual: a, expected: 1184 } if a == actual),
                "{e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&actual.to_string()) && msg.contains("1184"),
                "{msg}"
            );
        }
    }
}

#[test]
fn unsupported_snp_version_is_named() {
    let mut b = read("snp/virtee-milan-report.bin");
    b[0] = 4;
    let e = snp::parse_report(&b).unwrap_err();
    assert!(
        matches!(e, EvidenceError::SnpUnsupportedVersion { version: 4 }),
        "{e:?}"
    );
    assert!(e.to_string().contains("version 4"));
}

#[test]
fn turin_vcek_chains_to_the_builtin_turin_roots() {
    let turin = read("snp/virtee-turin-vcek.der");
    let by = snp::verify_vek_chain(&turin, None, None).unwrap();
    assert_eq!(
        (by.product, by.roots),
        (SnpProduct::Turin, snp::RootSource::BuiltIn)
    );
    let by =
        snp::verify_vek_chain(&turin, Some(&read("snp/amd-turin-cert_chain.pem")), None).unwrap();
    assert_eq!(
        (by.product, by.roots),
        (SnpProduct::Turin, snp::RootSource::Supplied)
    );
    let e = snp::verify_vek_chain(&turin, Some(&read("snp/amd-milan-cert_chain.pem")), None)
        .unwrap_err();
    assert_eq!(link_of(&e), Some(ChainLink::AskSignsVek), "{e}");
}

#[test]
fn non_certificates_are_rejected_clearly() {
    let r = parse("snp/virtee-milan-report.bin");
    let e = snp::verify_report(&r, b"not a certificate", None, None).unwrap_err();
    assert!(
        matches!(
            e,
            EvidenceError::Certificate {
                what: "VCEK/VLEK",
                ..
            }
        ),
        "{e:?}"
    );
    // An ARK is not an endorsement key.
    let e = snp::verify_report(&r, &read("snp/amd-milan-ark.pem"), None, None).unwrap_err();
    assert!(
        matches!(
            e,
            EvidenceError::MissingCertificate {
                what: "VCEK/VLEK",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("ARK-Milan"), "{e}");
}

// ---------------------------------------------------------------------------
// TDX

fn check_attestation_key_signature(ctx: &str, q: &tdx::TdxQuote) {
    use p256::ecdsa::signature::Verifier;
    // Signature data starts with the ECDSA signature (r || s) and the raw
    // attestation public key (x || y); the signature covers header + body.
    let sd = q.signature_data();
    let sig = p256::ecdsa::Signature::from_slice(&sd[..64]).unwrap();
    let mut sec1 = vec![0x04];
    sec1.extend_from_slice(&sd[64..128]);
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    key.verify(q.signed_bytes(), &sig)
        .unwrap_or_else(|e| panic!("{ctx}: attestation key signature over signed_bytes(): {e}"));
}

#[test]
fn every_tdx_quote_decodes_to_the_documented_values() {
    assert_eq!(TDX.len(), 8, "SOURCES.md lists 8 TDX quotes");
    for e in TDX {
        let ctx = e.file;
        let bytes = read_checked(e.file, e.sha256);
        assert_eq!(bytes.len(), e.size, "{ctx}");
        let q = tdx::parse_quote(&bytes).unwrap_or_else(|err| panic!("{ctx}: {err}"));
        let s = serde_json::to_value(q.summary()).unwrap();

        assert_eq!(s["tee"], "tdx", "{ctx}");
        assert_eq!(s["version"], e.version, "{ctx}");
        assert_eq!(s["att_key_type"], e.att_key_type, "{ctx}");
        assert_eq!(s["tee_type"], "0x81", "{ctx}");
        assert_eq!(s["qe_vendor_id"], e.qe_vendor_id, "{ctx}");
        assert_eq!(s["user_data"], e.user_data, "{ctx}");
        let body = match e.body_type {
            None | Some(2) => "tdx10",
            Some(3) => "tdx15",
            Some(other) => panic!("{ctx}: body type {other} in table"),
        };
        assert_eq!(s["body"], body, "{ctx}");
        assert_eq!(s["signature_data_len"], e.sig_len, "{ctx}");
        assert_eq!(s["trailing_bytes"], e.trailing, "{ctx}");
        assert_eq!(s["trailing_bytes_nonzero"], e.trailing_nonzero, "{ctx}");
        assert_eq!(s["tee_tcb_svn"], e.tee_tcb_svn, "{ctx}");
        assert_eq!(s["mr_seam"], e.mr_seam, "{ctx}");
        assert_eq!(s["td_attributes"]["raw"], e.td_attributes, "{ctx}");
        assert_eq!(s["xfam"], e.xfam, "{ctx}");
        assert_eq!(s["mr_td"], e.mr_td, "{ctx}");
        assert_eq!(s["mr_config_id"], e.mr_config_id, "{ctx}");
        assert_eq!(s["mr_owner"], e.mr_owner, "{ctx}");
        assert_eq!(s["mr_owner_config"], e.mr_owner_config, "{ctx}");
        for (i, want) in e.rtmr.iter().enumerate() {
            assert_eq!(s[format!("rtmr{i}")], *want, "{ctx}: rtmr{i}");
            assert_eq!(hex::encode(q.rtmr(i).unwrap()), *want, "{ctx}: rtmr{i}");
        }
        assert_eq!(s["report_data"], e.report_data, "{ctx}");
        match (e.tee_tcb_svn2, e.mr_servicetd) {
            (Some(svn2), Some(st)) => {
                assert_eq!(s["tee_tcb_svn2"], svn2, "{ctx}");
                assert_eq!(s["mr_servicetd"], st, "{ctx}");
            }
            _ => {
                assert!(s.get("tee_tcb_svn2").is_none(), "{ctx}");
                assert!(s.get("mr_servicetd").is_none(), "{ctx}");
            }
        }
        // DEBUG is bit 0 of the little-endian TD_ATTRIBUTES: the low bit of
        // the first byte of the hex SOURCES.md gives.
        let debug = u8::from_str_radix(&e.td_attributes[..2], 16).unwrap() & 1 == 1;
        assert_eq!(s["debug"], debug, "{ctx}");
        assert_eq!(s["td_attributes"]["debug"], debug, "{ctx}");
        assert_eq!(q.debug(), debug, "{ctx}");

        // Typed accessors used by the broker.
        assert_eq!(q.version(), e.version, "{ctx}");
        assert_eq!(hex::encode(q.measurement()), e.mr_td, "{ctx}");
        assert_eq!(hex::encode(q.report_data()), e.report_data, "{ctx}");
        assert_eq!(hex::encode(q.mr_config_id()), e.mr_config_id, "{ctx}");
        assert_eq!(q.trailing_len(), e.trailing, "{ctx}");

        // The region the attestation key signed is exactly what we call
        // signed_bytes(): this pins the header/body boundaries for v4 and v5.
        check_attestation_key_signature(ctx, &q);

        let d = decode(&bytes).unwrap_or_else(|err| panic!("{ctx}: {err}"));
        assert!(matches!(d, Decoded::Tdx(_)), "{ctx}");
        assert_eq!(d.tee(), "tdx");
        assert_eq!(hex::encode(d.measurement()), e.mr_td, "{ctx}");
        assert_eq!(hex::encode(d.report_data()), e.report_data, "{ctx}");
        assert_eq!(d.summary_json(), s, "{ctx}");
        let text = d.to_string();
        assert!(
            text.contains(e.mr_td) && text.contains(e.report_data),
            "{ctx}"
        );
        assert_eq!(text.contains("WARNING"), debug, "{ctx}");
    }
}

/// trustee's expected claims for its v4 quote: an independent decoding.
#[test]
fn trustee_v4_quote_matches_upstream_expected_claims() {
    let claims: serde_json::Value =
        serde_json::from_slice(&read("tdx/trustee-tdx-quote-v4-expected-claims.json")).unwrap();
    let q = tdx::parse_quote(&read("tdx/trustee-tdx-quote-v4.dat")).unwrap();
    let s = serde_json::to_value(q.summary()).unwrap();
    let body = &claims["quote"]["body"];
    for (ours, theirs) in [
        ("mr_config_id", "mr_config_id"),
        ("mr_owner", "mr_owner"),
        ("mr_owner_config", "mr_owner_config"),
        ("mr_seam", "mr_seam"),
        ("mr_td", "mr_td"),
        ("mr_signer_seam", "mrsigner_seam"),
        ("report_data", "report_data"),
        ("rtmr0", "rtmr_0"),
        ("rtmr1", "rtmr_1"),
        ("rtmr2", "rtmr_2"),
        ("rtmr3", "rtmr_3"),
        ("seam_attributes", "seam_attributes"),
        ("tee_tcb_svn", "tcb_svn"),
        ("xfam", "xfam"),
    ] {
        assert_eq!(s[ours], body[theirs], "{ours}");
    }
    assert_eq!(s["td_attributes"]["raw"], body["td_attributes"]);
    let header = &claims["quote"]["header"];
    assert_eq!(s["qe_vendor_id"], header["vendor_id"]);
    assert_eq!(s["user_data"], header["user_data"]);
    assert_eq!(
        hex::encode(q.header.att_key_type.to_le_bytes()),
        header["att_key_type"]
    );
    assert_eq!(
        hex::encode(q.header.version.to_le_bytes()),
        header["version"]
    );
    assert_eq!(
        hex::encode(q.header.tee_type.to_le_bytes()),
        header["tee_type"]
    );
    let attrs = &claims["td_attributes"];
    assert_eq!(s["td_attributes"]["debug"], attrs["debug"]);
    assert_eq!(
        s["td_attributes"]["sept_ve_disable"],
        attrs["septve_disable"]
    );
    assert_eq!(s["td_attributes"]["kl"], attrs["key_locker"]);
    assert_eq!(s["td_attributes"]["perfmon"], attrs["perfmon"]);
    assert_eq!(s["td_attributes"]["pks"], attrs["protection_keys"]);
    assert_eq!(attrs["debug"], true);
    assert!(q.debug());
}

#[test]
fn truncated_tdx_quotes_fail_clearly() {
    let full = read("tdx/trustee-tdx-quote-v4.dat"); // no trailing bytes
                                                     // One byte short of the declared signature data.
    let e = tdx::parse_quote(&full[..full.len() - 1]).unwrap_err();
    assert!(
        matches!(
            e,
            EvidenceError::TdxSignatureDataOverrun {
                declared: 4300,
                available: 4299
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("4300"), "{e}");
    // Cut inside the body.
    let e = tdx::parse_quote(&full[..600]).unwrap_err();
    assert!(
        matches!(
            e,
            EvidenceError::TdxTruncated {
                needed: 636,
                actual: 600,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("636") && msg.contains("600"), "{msg}");
    // Cut inside the header.
    let e = tdx::parse_quote(&full[..20]).unwrap_err();
    assert!(
        matches!(e, EvidenceError::TdxTruncated { actual: 20, .. }),
        "{e:?}"
    );
    // decode() sniffs it as TDX and reports the same.
    assert!(matches!(
        decode(&full[..600]),
        Err(EvidenceError::TdxTruncated { .. })
    ));
}

#[test]
fn oversized_tdx_input_is_capped() {
    let mut big = read("tdx/trustee-tdx-quote-v5.dat");
    big.resize(tdx::MAX_QUOTE_LEN + 1, 0);
    let e = decode(&big).unwrap_err();
    assert!(
        matches!(e, EvidenceError::TdxTooLarge { actual, max: 65536 } if actual == 65537),
        "{e:?}"
    );
    // Exactly at the cap is still a quote with zero padding.
    big.truncate(tdx::MAX_QUOTE_LEN);
    let q = tdx::parse_quote(&big).unwrap();
    assert_eq!(q.trailing_len(), tdx::MAX_QUOTE_LEN - 5006);
}

#[test]
fn malformed_tdx_headers_are_named() {
    let v5 = read("tdx/gotdxguest-quote-v5-sample.dat");
    let mut b = v5.clone();
    b[4] = 0x00; // tee_type SGX
    assert!(matches!(
        tdx::parse_quote(&b),
        Err(EvidenceError::TdxWrongTeeType { tee_type: 0 })
    ));
    assert!(matches!(
        decode(&b),
        Err(EvidenceError::UnrecognizedFormat { .. })
    ));
    let mut b = v5.clone();
    b[48] = 1; // v5 body type 1 = SGX enclave report
    let e = tdx::parse_quote(&b).unwrap_err();
    assert!(
        matches!(e, EvidenceError::TdxUnsupportedBodyType { body_type: 1 }),
        "{e:?}"
    );
    let mut b = v5.clone();
    b[50..54].copy_from_slice(&584u32.to_le_bytes()); // TDX 1.5 type with a 1.0 size
    let e = tdx::parse_quote(&b).unwrap_err();
    assert!(
        matches!(
            e,
            EvidenceError::TdxBodySizeMismatch {
                body_type: 3,
                body_size: 584,
                expected: 648
            }
        ),
        "{e:?}"
    );
    let mut b = v5;
    b[0] = 6;
    assert!(matches!(
        tdx::parse_quote(&b),
        Err(EvidenceError::TdxUnsupportedVersion { version: 6 })
    ));
}

#[test]
fn other_inputs_get_a_useful_error() {
    let e = decode(&read("tdx/guestcomponents-tdreport.bin")).unwrap_err();
    assert!(e.to_string().contains("TDREPORT"), "{e}");
    let e = decode(&read("snp/trustee-snp-evidence-with-certchain.json")).unwrap_err();
    assert!(e.to_string().contains("JSON"), "{e}");
    let e = decode(&read("snp/trustee-milan-vcek.der")).unwrap_err();
    assert!(
        matches!(e, EvidenceError::UnrecognizedFormat { len: 1360, .. }),
        "{e:?}"
    );
}
