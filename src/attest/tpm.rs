//! A minimal TPM 2.0 client: the commands the Azure vTPM attester needs,
//! marshalled by hand and sent through `/dev/tpmrm0`.
//!
//! Decision: raw commands, not `tss-esapi`. That crate links the tpm2-tss C
//! stack (libtss2-esys, -mu, -sys, -tctildr, which dlopens a TCTI library,
//! and libcrypto for its session HMACs) into the initramfs: on Debian 12
//! 1.14 MB of tpm2-tss plus the 4.7 MB libcrypto 3, and a run-time plugin
//! lookup, for nine commands that need no encrypted or
//! HMAC sessions: the vTPM's owner hierarchy and the AK have empty
//! passwords, so every authorisation is the plain password session
//! (`TPM_RS_PW`, empty). `az-snp-vtpm` / `az-tdx-vtpm` / the Azure guest
//! attestation SDK build on `tss-esapi` (and OpenSSL), so we take their
//! formats (docs/azure-vtpm-evidence.md) and leave their code.
//!
//! All integers are big-endian; `TPM2B` is a u16 length and the bytes.
//! [`TpmTransport`] is the seam: [`DeviceTransport`] talks to the kernel's
//! resource manager, tests talk to an in-process stand-in.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;
/// The owner hierarchy: authorises every NV operation here.
pub const RH_OWNER: u32 = 0x4000_0001;
/// The password authorisation session.
const RS_PW: u32 = 0x4000_0009;
pub const ALG_SHA256: u16 = 0x000b;
const ALG_RSA: u16 = 0x0001;
const ALG_RSASSA: u16 = 0x0014;
const ALG_NULL: u16 = 0x0010;
/// `TPM_PT_NV_BUFFER_MAX`: the largest NV_Read/NV_Write chunk.
const PT_NV_BUFFER_MAX: u32 = 0x12c;
const CAP_TPM_PROPERTIES: u32 = 6;
/// Every TPM 2.0 must accept NV chunks this large (PC client profile).
const NV_CHUNK_FALLBACK: usize = 512;
/// The largest response we accept: a quote, a 2 KiB NV chunk.
const MAX_RESPONSE: usize = 8192;

/// `TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_NO_DA`: an ordinary
/// index the owner (empty password) reads and writes.
pub const NV_OWNER_RW: u32 = (1 << 1) | (1 << 17) | (1 << 25);

/// Sends one command and returns the whole response.
pub trait TpmTransport: Send + Sync {
    fn transact(&self, command: &[u8]) -> io::Result<Vec<u8>>;
    /// Where it goes, for messages (`/dev/tpmrm0`).
    fn describe(&self) -> String;
}

/// The kernel's TPM resource manager device: each command opens it, writes
/// the command in one `write`, reads the response in one `read`.
#[derive(Debug, Clone)]
pub struct DeviceTransport {
    path: PathBuf,
}

impl DeviceTransport {
    pub fn new(path: &Path) -> Self {
        DeviceTransport {
            path: path.to_path_buf(),
        }
    }
}

impl TpmTransport for DeviceTransport {
    fn transact(&self, command: &[u8]) -> io::Result<Vec<u8>> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)?;
        f.write_all(command)?;
        let mut buf = vec![0u8; MAX_RESPONSE];
        let n = f.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Why a TPM command failed.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("TPM {dev}: TPM2_{command}: {source} (is the TPM driver loaded, and are we root?)")]
    Io {
        dev: String,
        command: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("TPM {dev}: TPM2_{command} failed with response code {rc:#x} ({})", rc_meaning(*.rc))]
    Rc {
        dev: String,
        command: &'static str,
        rc: u32,
    },
    #[error("TPM {dev}: TPM2_{command}: malformed response: {reason}")]
    Reply {
        dev: String,
        command: &'static str,
        reason: String,
    },
}

impl TpmError {
    /// The handle (an NV index, a persistent key) does not exist.
    pub fn is_missing_handle(&self) -> bool {
        // TPM_RC_HANDLE: format 1 (bit 7), error 0x0b, any handle number
        // in bits 8-11, bit 6 clear (a handle, not a parameter).
        matches!(self, TpmError::Rc { rc, .. } if rc & 0x0bf == 0x08b)
    }
}

/// What a response code means, for the operator.
fn rc_meaning(rc: u32) -> &'static str {
    if rc & 0x080 != 0 {
        return match rc & 0x03f {
            0x0b => "TPM_RC_HANDLE: no such handle or NV index",
            0x0e => "TPM_RC_AUTH_FAIL: authorisation failed",
            0x15 => "TPM_RC_SIZE: a size is wrong",
            0x04 => "TPM_RC_VALUE: a value is out of range",
            0x18 => "TPM_RC_SCHEME: unsupported signing scheme",
            0x1a => "TPM_RC_KEY: the key cannot do this",
            _ => "see TPM 2.0 Part 2, response codes",
        };
    }
    match rc {
        0x101 => "TPM_RC_FAILURE: the TPM is in failure mode",
        0x100 => "TPM_RC_INITIALIZE: the TPM was not started",
        0x146 => "TPM_RC_NV_RANGE: read or write past the end of the NV index",
        0x148 => "TPM_RC_NV_LOCKED: the NV index is locked",
        0x149 => "TPM_RC_NV_AUTHORIZATION: the NV index does not allow this authorisation",
        0x14a => "TPM_RC_NV_UNINITIALIZED: the NV index was never written",
        0x14c => "TPM_RC_NV_DEFINED: the NV index already exists",
        0x922 => "TPM_RC_RETRY: the TPM is busy, retry",
        0x923 => "TPM_RC_NV_UNAVAILABLE: NV is not available now",
        _ => "see TPM 2.0 Part 2, response codes",
    }
}

/// A command being marshalled.
struct Cmd {
    buf: Vec<u8>,
    name: &'static str,
}

impl Cmd {
    fn new(code: u32, name: &'static str, sessions: bool) -> Self {
        let mut buf = Vec::with_capacity(64);
        let tag = if sessions {
            ST_SESSIONS
        } else {
            ST_NO_SESSIONS
        };
        buf.extend_from_slice(&tag.to_be_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&code.to_be_bytes());
        Cmd { buf, name }
    }
    fn u8(mut self, v: u8) -> Self {
        self.buf.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(mut self, v: &[u8]) -> Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// `TPM2B`: u16 length, then the bytes. Callers keep `v` short.
    fn b2b(self, v: &[u8]) -> Self {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len).bytes(&v[..usize::from(len)])
    }
    /// The empty password session, as the authorisation area.
    fn password_session(self) -> Self {
        self.u32(9).u32(RS_PW).u16(0).u8(0).u16(0)
    }
    /// `TPML_PCR_SELECTION` for one bank.
    fn pcr_selection(self, alg: u16, pcrs: &[u8]) -> Self {
        let mut bitmap = [0u8; 3];
        for &p in pcrs {
            bitmap[usize::from(p / 8) % 3] |= 1 << (p % 8);
        }
        self.u32(1).u16(alg).u8(3).bytes(&bitmap)
    }
    fn finish(mut self) -> (Vec<u8>, &'static str) {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[2..6].copy_from_slice(&len.to_be_bytes());
        (self.buf, self.name)
    }
}

/// Reads a response's parameters.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(format!(
                "needs {n} bytes at offset {}, has {}",
                self.at,
                self.b.len()
            ));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn b2b(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// The public area of an NV index (`TPMS_NV_PUBLIC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvPublic {
    pub index: u32,
    pub attributes: u32,
    pub size: usize,
}

/// An RSA public key in the TPM (`TPMT_PUBLIC`, RSA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublic {
    pub modulus: Vec<u8>,
    pub exponent: u32,
}

/// A signed quote: `TPMS_ATTEST` as the TPM marshalled it, and the raw
/// RSASSA signature over it.
#[derive(Debug, Clone)]
pub struct Quote {
    pub message: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A TPM behind a transport.
pub struct Tpm {
    transport: Box<dyn TpmTransport>,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tpm({})", self.transport.describe())
    }
}

impl Tpm {
    pub fn new(transport: Box<dyn TpmTransport>) -> Self {
        Tpm { transport }
    }

    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    fn reply_err(&self, command: &'static str, reason: String) -> TpmError {
        TpmError::Reply {
            dev: self.describe(),
            command,
            reason,
        }
    }

    /// Sends `cmd`; returns the response parameters (after the parameter
    /// size of a session response). None of our commands has response
    /// handles.
    fn run(&self, cmd: Cmd) -> Result<Vec<u8>, TpmError> {
        let (bytes, name) = cmd.finish();
        let resp = self
            .transport
            .transact(&bytes)
            .map_err(|source| TpmError::Io {
                dev: self.describe(),
                command: name,
                source,
            })?;
        let mut r = Reader { b: &resp, at: 0 };
        let header = (|| Ok::<_, String>((r.u16()?, r.u32()?, r.u32()?)))();
        let (tag, size, rc) = header.map_err(|e| self.reply_err(name, e))?;
        if rc != 0 {
            return Err(TpmError::Rc {
                dev: self.describe(),
                command: name,
                rc,
            });
        }
        if usize::try_from(size).ok() != Some(resp.len()) {
            return Err(self.reply_err(
                name,
                format!("header says {size} bytes, got {}", resp.len()),
            ));
        }
        match tag {
            ST_NO_SESSIONS => Ok(resp[10..].to_vec()),
            ST_SESSIONS => {
                let n = r.u32().map_err(|e| self.reply_err(name, e))?;
                let params = r.take(n as usize).map_err(|e| self.reply_err(name, e))?;
                Ok(params.to_vec())
            }
            other => Err(self.reply_err(name, format!("tag {other:#06x}"))),
        }
    }

    /// Parses a response with `f`, naming the command on failure.
    fn parse<T>(
        &self,
        name: &'static str,
        params: &[u8],
        f: impl FnOnce(&mut Reader<'_>) -> Result<T, String>,
    ) -> Result<T, TpmError> {
        f(&mut Reader { b: params, at: 0 }).map_err(|e| self.reply_err(name, e))
    }

    /// `TPM2_NV_ReadPublic`.
    pub fn nv_read_public(&self, index: u32) -> Result<NvPublic, TpmError> {
        let p = self.run(Cmd::new(0x169, "NV_ReadPublic", false).u32(index))?;
        self.parse("NV_ReadPublic", &p, |r| {
            let area = r.b2b()?;
            let mut a = Reader { b: area, at: 0 };
            let index = a.u32()?;
            let _name_alg = a.u16()?;
            let attributes = a.u32()?;
            let _policy = a.b2b()?;
            let size = usize::from(a.u16()?);
            Ok(NvPublic {
                index,
                attributes,
                size,
            })
        })
    }

    /// The largest NV chunk this TPM reads or writes at once.
    fn nv_chunk(&self) -> usize {
        let cmd = Cmd::new(0x17a, "GetCapability", false)
            .u32(CAP_TPM_PROPERTIES)
            .u32(PT_NV_BUFFER_MAX)
            .u32(1);
        let found = self.run(cmd).ok().and_then(|p| {
            self.parse("GetCapability", &p, |r| {
                let _more = r.u8()?;
                let _cap = r.u32()?;
                let count = r.u32()?;
                for _ in 0..count {
                    let (prop, value) = (r.u32()?, r.u32()?);
                    if prop == PT_NV_BUFFER_MAX {
                        return Ok(Some(value as usize));
                    }
                }
                Ok(None)
            })
            .ok()
            .flatten()
        });
        found
            .filter(|&n| (64..=4096).contains(&n))
            .unwrap_or(NV_CHUNK_FALLBACK)
    }

    /// `TPM2_NV_Read` of the whole index, in chunks, owner-authorised.
    pub fn nv_read(&self, index: u32) -> Result<Vec<u8>, TpmError> {
        let size = self.nv_read_public(index)?.size;
        let chunk = self.nv_chunk();
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let n = chunk.min(size - out.len());
            let cmd = Cmd::new(0x14e, "NV_Read", true)
                .u32(RH_OWNER)
                .u32(index)
                .password_session()
                .u16(n as u16)
                .u16(out.len() as u16);
            let p = self.run(cmd)?;
            let data = self.parse("NV_Read", &p, |r| Ok(r.b2b()?.to_vec()))?;
            if data.len() != n {
                return Err(self.reply_err(
                    "NV_Read",
                    format!("asked for {n} bytes, got {}", data.len()),
                ));
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    /// `TPM2_NV_Write` at offset 0, owner-authorised (`data` fits one chunk).
    pub fn nv_write(&self, index: u32, data: &[u8]) -> Result<(), TpmError> {
        let cmd = Cmd::new(0x137, "NV_Write", true)
            .u32(RH_OWNER)
            .u32(index)
            .password_session()
            .b2b(data)
            .u16(0);
        self.run(cmd).map(drop)
    }

    /// `TPM2_NV_DefineSpace` in the owner hierarchy, empty auth value.
    pub fn nv_define(&self, index: u32, size: u16, attributes: u32) -> Result<(), TpmError> {
        let mut public = Vec::with_capacity(14);
        public.extend_from_slice(&index.to_be_bytes());
        public.extend_from_slice(&ALG_SHA256.to_be_bytes());
        public.extend_from_slice(&attributes.to_be_bytes());
        public.extend_from_slice(&0u16.to_be_bytes());
        public.extend_from_slice(&size.to_be_bytes());
        let cmd = Cmd::new(0x12a, "NV_DefineSpace", true)
            .u32(RH_OWNER)
            .password_session()
            .b2b(&[])
            .b2b(&public);
        self.run(cmd).map(drop)
    }

    /// `TPM2_NV_UndefineSpace`, owner-authorised.
    pub fn nv_undefine(&self, index: u32) -> Result<(), TpmError> {
        let cmd = Cmd::new(0x122, "NV_UndefineSpace", true)
            .u32(RH_OWNER)
            .u32(index)
            .password_session();
        self.run(cmd).map(drop)
    }

    /// `TPM2_ReadPublic` of an RSA key.
    pub fn read_public_rsa(&self, handle: u32) -> Result<RsaPublic, TpmError> {
        let p = self.run(Cmd::new(0x173, "ReadPublic", false).u32(handle))?;
        self.parse("ReadPublic", &p, |r| {
            let area = r.b2b()?;
            let mut a = Reader { b: area, at: 0 };
            let ty = a.u16()?;
            if ty != ALG_RSA {
                return Err(format!("key type {ty:#06x}, not RSA"));
            }
            let _name_alg = a.u16()?;
            let _attributes = a.u32()?;
            let _policy = a.b2b()?;
            if a.u16()? != ALG_NULL {
                let _bits_mode = (a.u16()?, a.u16()?);
            }
            if a.u16()? != ALG_NULL {
                let _hash = a.u16()?;
            }
            let _bits = a.u16()?;
            let exponent = match a.u32()? {
                0 => 65537,
                e => e,
            };
            let modulus = a.b2b()?.to_vec();
            Ok(RsaPublic { modulus, exponent })
        })
    }

    /// `TPM2_Quote` with `key` over the SHA-256 PCRs `pcrs`, binding
    /// `qualifying` (at most 64 bytes), in the key's own scheme (RSASSA).
    pub fn quote(&self, key: u32, qualifying: &[u8], pcrs: &[u8]) -> Result<Quote, TpmError> {
        let cmd = Cmd::new(0x158, "Quote", true)
            .u32(key)
            .password_session()
            .b2b(qualifying)
            .u16(ALG_NULL)
            .pcr_selection(ALG_SHA256, pcrs);
        let p = self.run(cmd)?;
        self.parse("Quote", &p, |r| {
            let message = r.b2b()?.to_vec();
            let alg = r.u16()?;
            if alg != ALG_RSASSA {
                return Err(format!(
                    "signature algorithm {alg:#06x}; the AK must sign with RSASSA ({ALG_RSASSA:#06x})"
                ));
            }
            let hash = r.u16()?;
            if hash != ALG_SHA256 {
                return Err(format!("signature hash {hash:#06x}, not SHA-256"));
            }
            let signature = r.b2b()?.to_vec();
            Ok(Quote { message, signature })
        })
    }

    /// `TPM2_PCR_Read` of SHA-256 PCRs 0..count, as many calls as the TPM
    /// needs (it returns at most 8 digests per call).
    pub fn pcr_read_sha256(&self, count: u8) -> Result<Vec<Vec<u8>>, TpmError> {
        let mut values: Vec<Option<Vec<u8>>> = vec![None; usize::from(count)];
        for _round in 0..=count {
            let missing: Vec<u8> = (0..count)
                .filter(|&i| values[usize::from(i)].is_none())
                .collect();
            if missing.is_empty() {
                break;
            }
            let cmd = Cmd::new(0x17e, "PCR_Read", false).pcr_selection(ALG_SHA256, &missing);
            let p = self.run(cmd)?;
            let (selected, digests) = self.parse("PCR_Read", &p, |r| {
                let _counter = r.u32()?;
                let mut selected = Vec::new();
                for _ in 0..r.u32()? {
                    let alg = r.u16()?;
                    let bitmap = r.b2b_u8()?;
                    if alg == ALG_SHA256 {
                        for (byte, bits) in bitmap.iter().enumerate() {
                            for bit in 0..8 {
                                if bits & (1 << bit) != 0 {
                                    selected.push(byte * 8 + bit);
                                }
                            }
                        }
                    }
                }
                let mut digests = Vec::new();
                for _ in 0..r.u32()? {
                    digests.push(r.b2b()?.to_vec());
                }
                Ok((selected, digests))
            })?;
            if digests.is_empty() || digests.len() != selected.len() {
                return Err(self.reply_err(
                    "PCR_Read",
                    format!(
                        "{} digests for {} selected PCRs",
                        digests.len(),
                        selected.len()
                    ),
                ));
            }
            for (i, d) in selected.into_iter().zip(digests) {
                if let Some(slot) = values.get_mut(i) {
                    *slot = Some(d);
                }
            }
        }
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| self.reply_err("PCR_Read", format!("PCR {i} was never returned")))
            })
            .collect()
    }
}

impl Reader<'_> {
    /// A `TPMS_PCR_SELECTION` bitmap: u8 size, then the bytes.
    fn b2b_u8(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u8()?;
        Ok(self.take(usize::from(n))?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_marshal_as_the_spec_says() {
        // TPM2_NV_Read of 0x01400001, 1024 bytes at 0, owner + password.
        let (b, name) = Cmd::new(0x14e, "NV_Read", true)
            .u32(RH_OWNER)
            .u32(0x0140_0001)
            .password_session()
            .u16(1024)
            .u16(0)
            .finish();
        assert_eq!(name, "NV_Read");
        assert_eq!(
            hex::encode(b),
            [
                "8002", "00000023", "0000014e", "40000001", "01400001", "00000009", "40000009",
                "0000", "00", "0000", "0400", "0000"
            ]
            .concat()
        );
        // PCR 0-23 selection.
        let (b, _) = Cmd::new(0x17e, "PCR_Read", false)
            .pcr_selection(ALG_SHA256, &(0..24).collect::<Vec<_>>())
            .finish();
        assert_eq!(hex::encode(&b[10..]), "00000001000b03ffffff");
    }

    #[test]
    fn missing_handle_codes() {
        let e = |rc| TpmError::Rc {
            dev: "t".into(),
            command: "NV_ReadPublic",
            rc,
        };
        assert!(e(0x18b).is_missing_handle());
        assert!(e(0x28b).is_missing_handle());
        assert!(!e(0x14a).is_missing_handle());
        assert!(!e(0x101).is_missing_handle());
        assert!(e(0x101).to_string().contains("failure mode"));
    }
}
