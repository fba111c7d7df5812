//! TEST ONLY: a stand-in for NVIDIA's `libnvidia-ml.so.1`, exporting the
//! NVML calls cvm-init's GPU attestation makes (src/attest/gpu/nvml.rs)
//! and answering them from Trustee's Hopper sample
//! (`testdata/evidence/gpu/`): one GPU, its report and certificate chain.
//!
//! `NVML_STUB_MODE` (read by this library only, at every call) picks the
//! behaviour:
//!
//! | mode | what NVML says |
//! |---|---|
//! | `ok` (default) | the sample report as is: signed, but over the sample's own nonce |
//! | `echo` | the sample with the caller's nonce spliced into the request (bytes 4..36): binds the caller's session, but its signature no longer verifies |
//! | `no-gpu` | zero GPUs |
//! | `no-driver` | `nvmlInit_v2` fails with NVML_ERROR_DRIVER_NOT_LOADED |
//! | `cc-off` | confidential computing disabled |
//! | `devtools` | CC in devtools mode |
//! | `sim` | CC environment SIM |
//! | `ampere` | the GPU is an Ampere (no confidential computing) |
//!
//! `NVML_STUB_LOG`, if set, names a file each call appends its name to, so
//! tests can see the order of calls (e.g. the ready state set last).

// The exported names are NVML's.
#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::io::Write;

const REPORT_HEX: &str = include_str!("../../../testdata/evidence/gpu/hopperAttestationReport.txt");
const CHAIN: &str = include_str!("../../../testdata/evidence/gpu/hopper_cert_chain_case1.txt");

const SUCCESS: c_int = 0;
const ERROR_INVALID_ARGUMENT: c_int = 2;
const ERROR_DRIVER_NOT_LOADED: c_int = 9;
const ERROR_UNKNOWN: c_int = 999;
const NONCE_AT: usize = 4;
const NONCE_LEN: usize = 32;
const REPORT_OFFSET: usize = 44;
const REPORT_MAX: usize = 0x2000;
const CHAIN_SIZE_OFFSET: usize = 4;
const CHAIN_OFFSET: usize = 8 + 0x1000;
const CHAIN_MAX: usize = 0x1400;
const UUID: &[u8] = b"GPU-00000000-stub-0000-0000-000000000000\0";

static READY: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn mode() -> String {
    std::env::var("NVML_STUB_MODE").unwrap_or_else(|_| "ok".to_owned())
}

fn note(call: &str) {
    if let Some(path) = std::env::var_os("NVML_STUB_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{call}");
        }
    }
}

/// Writes `v` to `p` if `p` is not NULL.
///
/// # Safety
/// `p` is NULL or valid for writing one `T`.
unsafe fn put<T>(p: *mut T, v: T) -> c_int {
    if p.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: non-NULL and writable (the caller's contract).
    unsafe { p.write_unaligned(v) };
    SUCCESS
}

#[no_mangle]
pub extern "C" fn nvmlInit_v2() -> c_int {
    note("nvmlInit_v2");
    if mode() == "no-driver" {
        return ERROR_DRIVER_NOT_LOADED;
    }
    SUCCESS
}

#[no_mangle]
pub extern "C" fn nvmlShutdown() -> c_int {
    note("nvmlShutdown");
    SUCCESS
}

#[no_mangle]
pub extern "C" fn nvmlErrorString(code: c_int) -> *const c_char {
    let s: &'static [u8] = match code {
        SUCCESS => b"Success\0",
        ERROR_INVALID_ARGUMENT => b"Invalid Argument\0",
        ERROR_DRIVER_NOT_LOADED => b"Driver Not Loaded\0",
        _ => b"Unknown Error\0",
    };
    s.as_ptr().cast()
}

/// # Safety
/// `count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> c_int {
    let n = if mode() == "no-gpu" { 0 } else { 1 };
    // SAFETY: the caller's contract.
    unsafe { put(count, n) }
}

/// # Safety
/// `device` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut *mut c_void,
) -> c_int {
    if index != 0 {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: the caller's contract. The handle is a dummy non-NULL value.
    unsafe { put(device, std::ptr::NonNull::<c_void>::dangling().as_ptr()) }
}

/// # Safety
/// `arch` is NULL or a valid out-pointer.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetArchitecture(
    _device: *mut c_void,
    arch: *mut c_uint,
) -> c_int {
    note("nvmlDeviceGetArchitecture");
    // NVML_DEVICE_ARCH_AMPERE (7) in mode `ampere`, else HOPPER (9).
    let code = if mode() == "ampere" { 7 } else { 9 };
    // SAFETY: the caller's contract.
    unsafe { put(arch, code) }
}

/// # Safety
/// `uuid` is NULL or writable for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    _device: *mut c_void,
    uuid: *mut c_char,
    length: c_uint,
) -> c_int {
    if uuid.is_null() || (length as usize) < UUID.len() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: writable for length >= UUID.len() bytes (checked above).
    unsafe { std::ptr::copy_nonoverlapping(UUID.as_ptr(), uuid.cast(), UUID.len()) };
    SUCCESS
}

/// # Safety
/// `state` is NULL or writable for three `unsigned int`s.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetConfComputeState(state: *mut [c_uint; 3]) -> c_int {
    let (environment, cc_feature, dev_tools) = match mode().as_str() {
        "cc-off" => (2, 0, 0),
        "devtools" => (2, 1, 1),
        "sim" => (1, 1, 0),
        _ => (2, 1, 0),
    };
    // SAFETY: the caller's contract.
    unsafe { put(state, [environment, cc_feature, dev_tools]) }
}

/// # Safety
/// `ready` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetConfComputeGpusReadyState(ready: *mut c_uint) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { put(ready, READY.load(std::sync::atomic::Ordering::SeqCst)) }
}

#[no_mangle]
pub extern "C" fn nvmlSystemSetConfComputeGpusReadyState(ready: c_uint) -> c_int {
    note(&format!("nvmlSystemSetConfComputeGpusReadyState {ready}"));
    READY.store(ready, std::sync::atomic::Ordering::SeqCst);
    SUCCESS
}

/// # Safety
/// `report` is NULL or points to an `nvmlConfComputeGpuAttestationReport_t`
/// (12332 bytes) with the nonce filled in.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetConfComputeGpuAttestationReport(
    _device: *mut c_void,
    report: *mut u8,
) -> c_int {
    note("nvmlDeviceGetConfComputeGpuAttestationReport");
    if report.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    let Ok(mut bytes) = hex::decode(REPORT_HEX.trim()) else {
        return ERROR_UNKNOWN;
    };
    if mode() == "echo" {
        // SAFETY: the struct's nonce (input) is at offset 12, 32 bytes.
        let nonce = unsafe { std::slice::from_raw_parts(report.add(12), NONCE_LEN) };
        bytes[NONCE_AT..NONCE_AT + NONCE_LEN].copy_from_slice(nonce);
    }
    if bytes.len() > REPORT_MAX {
        return ERROR_UNKNOWN;
    }
    // SAFETY: the struct has attestationReportSize at 4 and the
    // 8192-byte report buffer at 44; bytes fits (checked).
    unsafe {
        report
            .add(4)
            .cast::<u32>()
            .write_unaligned(bytes.len() as u32);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), report.add(REPORT_OFFSET), bytes.len());
    }
    SUCCESS
}

/// # Safety
/// `cert` is NULL or points to an `nvmlConfComputeGpuCertificate_t`
/// (9224 bytes).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetConfComputeGpuCertificate(
    _device: *mut c_void,
    cert: *mut u8,
) -> c_int {
    note("nvmlDeviceGetConfComputeGpuCertificate");
    if cert.is_null() || CHAIN.len() > CHAIN_MAX {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: the struct has attestationCertChainSize at 4 and the
    // 5120-byte attestationCertChain at 4104; the chain fits (checked).
    unsafe {
        cert.add(CHAIN_SIZE_OFFSET)
            .cast::<u32>()
            .write_unaligned(CHAIN.len() as u32);
        std::ptr::copy_nonoverlapping(CHAIN.as_ptr(), cert.add(CHAIN_OFFSET), CHAIN.len());
    }
    SUCCESS
}
