//! The NVML calls GPU attestation needs, loaded at run time with `dlopen`
//! (the NVIDIA driver's `libnvidia-ml.so.1` is not linked: an image
//! without a GPU needs no NVIDIA library). Only this module has `unsafe`;
//! [`Nvml`] is the safe handle [`super::Gpus`] is implemented on.
//!
//! Structs and constants as declared in `nvml.h` (docs/gpu-evidence.md,
//! section 3); their sizes are checked at compile time.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::mem::size_of;
use std::path::Path;

use super::{CcState, GpuError, GpuId, Gpus, REPORT_NONCE_LEN};

/// `nvmlReturn_t` (a C enum).
type Return = c_int;
/// `nvmlDevice_t`, an opaque pointer.
type Device = *mut c_void;

const NVML_SUCCESS: Return = 0;
/// `NVML_ERROR_DRIVER_NOT_LOADED`: the library is installed but no
/// `nvidia` kernel module runs (no GPU, or the driver failed to load).
pub(super) const NVML_ERROR_DRIVER_NOT_LOADED: Return = 9;
/// `NVML_DEVICE_UUID_V2_BUFFER_SIZE`.
const UUID_BUFFER: usize = 96;
const CC_ATTESTATION_REPORT_SIZE: usize = 0x2000;
const CC_CEC_ATTESTATION_REPORT_SIZE: usize = 0x1000;
const GPU_CERT_CHAIN_SIZE: usize = 0x1000;
const GPU_ATTESTATION_CERT_CHAIN_SIZE: usize = 0x1400;
/// `NVML_CC_ACCEPTING_CLIENT_REQUESTS_TRUE`.
const ACCEPTING_CLIENT_REQUESTS: c_uint = 1;

/// `nvmlConfComputeSystemState_t`.
#[repr(C)]
#[derive(Default)]
struct ConfComputeSystemState {
    environment: c_uint,
    cc_feature: c_uint,
    dev_tools_mode: c_uint,
}

/// `nvmlConfComputeGpuAttestationReport_t`.
#[repr(C)]
// Declared for the layout: NVML fills members this agent does not read.
#[allow(dead_code)]
struct GpuAttestationReport {
    is_cec_attestation_report_present: c_uint,
    attestation_report_size: c_uint,
    cec_attestation_report_size: c_uint,
    nonce: [u8; REPORT_NONCE_LEN],
    attestation_report: [u8; CC_ATTESTATION_REPORT_SIZE],
    cec_attestation_report: [u8; CC_CEC_ATTESTATION_REPORT_SIZE],
}

/// `nvmlConfComputeGpuCertificate_t`.
#[repr(C)]
// Declared for the layout: NVML fills members this agent does not read.
#[allow(dead_code)]
struct GpuCertificate {
    cert_chain_size: c_uint,
    attestation_cert_chain_size: c_uint,
    cert_chain: [u8; GPU_CERT_CHAIN_SIZE],
    attestation_cert_chain: [u8; GPU_ATTESTATION_CERT_CHAIN_SIZE],
}

const _: () = assert!(size_of::<ConfComputeSystemState>() == 12);
const _: () = assert!(size_of::<GpuAttestationReport>() == 12332);
const _: () = assert!(size_of::<GpuCertificate>() == 9224);

type FnVoid = unsafe extern "C" fn() -> Return;
type FnErrorString = unsafe extern "C" fn(Return) -> *const c_char;
type FnOutUint = unsafe extern "C" fn(*mut c_uint) -> Return;
type FnInUint = unsafe extern "C" fn(c_uint) -> Return;
type FnHandle = unsafe extern "C" fn(c_uint, *mut Device) -> Return;
type FnUuid = unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Return;
type FnArch = unsafe extern "C" fn(Device, *mut c_uint) -> Return;
type FnCcState = unsafe extern "C" fn(*mut ConfComputeSystemState) -> Return;
type FnReport = unsafe extern "C" fn(Device, *mut GpuAttestationReport) -> Return;
type FnCertificate = unsafe extern "C" fn(Device, *mut GpuCertificate) -> Return;

/// The resolved entry points.
struct Table {
    init: FnVoid,
    shutdown: FnVoid,
    error_string: FnErrorString,
    device_count: FnOutUint,
    handle_by_index: FnHandle,
    uuid: FnUuid,
    arch: FnArch,
    cc_state: FnCcState,
    get_ready: FnOutUint,
    set_ready: FnInUint,
    report: FnReport,
    certificate: FnCertificate,
}

/// NVML, initialised. Dropping it calls `nvmlShutdown`; the library stays
/// mapped until the process exits (NVML may leave threads behind, and
/// unmapping code a thread still runs would crash the agent).
pub(super) struct Nvml {
    library: String,
    f: Table,
}

fn dlerror() -> String {
    // SAFETY: dlerror takes no arguments; it returns NULL or a
    // NUL-terminated string valid until the next dl* call on this thread,
    // copied out at once.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        return "unknown dlopen error".to_owned();
    }
    // SAFETY: non-NULL, NUL-terminated (dlerror's contract, above).
    unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
}

impl Nvml {
    /// `dlopen`s `library` (a bare name is searched like any shared
    /// library, a path is used as is), resolves every symbol, then calls
    /// `nvmlInit_v2`.
    pub(super) fn open(library: &Path) -> Result<Self, GpuError> {
        let name = library.display().to_string();
        let c_name = CString::new(library.as_os_str().as_encoded_bytes()).map_err(|_| {
            GpuError::LibraryMissing {
                library: name.clone(),
                reason: "the path holds a NUL byte".to_owned(),
            }
        })?;
        // SAFETY: c_name is a valid NUL-terminated string. Loading runs the
        // library's initialisers: the library is the NVIDIA driver's, part
        // of the measured image, as trusted as the kernel module.
        let handle = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(GpuError::LibraryMissing {
                library: name,
                reason: dlerror(),
            });
        }
        macro_rules! sym {
            ($name:literal as $ty:ty) => {{
                // SAFETY: handle is a live dlopen handle; the name is a
                // NUL-terminated literal.
                let p = unsafe { libc::dlsym(handle, concat!($name, "\0").as_ptr().cast()) };
                if p.is_null() {
                    return Err(GpuError::Symbol {
                        library: name,
                        symbol: $name,
                    });
                }
                // SAFETY: p is the address of the NVML function of this
                // name, whose C signature (nvml.h) is the field's type.
                unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
            }};
        }
        let f = Table {
            init: sym!("nvmlInit_v2" as FnVoid),
            shutdown: sym!("nvmlShutdown" as FnVoid),
            error_string: sym!("nvmlErrorString" as FnErrorString),
            device_count: sym!("nvmlDeviceGetCount_v2" as FnOutUint),
            handle_by_index: sym!("nvmlDeviceGetHandleByIndex_v2" as FnHandle),
            uuid: sym!("nvmlDeviceGetUUID" as FnUuid),
            arch: sym!("nvmlDeviceGetArchitecture" as FnArch),
            cc_state: sym!("nvmlSystemGetConfComputeState" as FnCcState),
            get_ready: sym!("nvmlSystemGetConfComputeGpusReadyState" as FnOutUint),
            set_ready: sym!("nvmlSystemSetConfComputeGpusReadyState" as FnInUint),
            report: sym!("nvmlDeviceGetConfComputeGpuAttestationReport" as FnReport),
            certificate: sym!("nvmlDeviceGetConfComputeGpuCertificate" as FnCertificate),
        };
        let nvml = Nvml { library: name, f };
        // SAFETY: nvmlInit_v2 takes no arguments.
        let rc = unsafe { (nvml.f.init)() };
        if rc != NVML_SUCCESS {
            // Not initialised: Drop must not call nvmlShutdown.
            let e = nvml.error("nvmlInit_v2", rc, None);
            std::mem::forget(nvml);
            return Err(e);
        }
        Ok(nvml)
    }

    fn error(&self, call: &'static str, code: Return, gpu: Option<&GpuId>) -> GpuError {
        // SAFETY: nvmlErrorString accepts any code and returns NULL or a
        // static NUL-terminated string.
        let text = unsafe { (self.f.error_string)(code) };
        let message = if text.is_null() {
            "unknown error".to_owned()
        } else {
            // SAFETY: non-NULL, static and NUL-terminated (above).
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        };
        GpuError::Nvml {
            call,
            code,
            message,
            gpu: gpu.map(ToString::to_string),
        }
    }

    fn check(&self, call: &'static str, rc: Return, gpu: Option<&GpuId>) -> Result<(), GpuError> {
        if rc == NVML_SUCCESS {
            Ok(())
        } else {
            Err(self.error(call, rc, gpu))
        }
    }

    fn device(&self, gpu: &GpuId) -> Result<Device, GpuError> {
        let mut dev: Device = std::ptr::null_mut();
        // SAFETY: dev is a valid out-pointer for one handle.
        let rc = unsafe { (self.f.handle_by_index)(gpu.index, &mut dev) };
        self.check("nvmlDeviceGetHandleByIndex_v2", rc, Some(gpu))?;
        Ok(dev)
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: NVML was initialised by open(); no handle outlives self.
        let rc = unsafe { (self.f.shutdown)() };
        if rc != NVML_SUCCESS {
            log::debug!("nvmlShutdown returned {rc}");
        }
    }
}

/// The first `size` bytes of `buf`, refusing a size larger than the buffer.
fn sized(buf: &[u8], size: c_uint, gpu: &GpuId, what: &'static str) -> Result<Vec<u8>, GpuError> {
    let size = size as usize;
    buf.get(..size)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| GpuError::Oversized {
            gpu: gpu.to_string(),
            what,
            size,
            max: buf.len(),
        })
}

impl Gpus for Nvml {
    fn describe(&self) -> String {
        format!("NVML ({})", self.library)
    }

    fn list(&self) -> Result<Vec<GpuId>, GpuError> {
        let mut count: c_uint = 0;
        // SAFETY: count is a valid out-pointer.
        let rc = unsafe { (self.f.device_count)(&mut count) };
        self.check("nvmlDeviceGetCount_v2", rc, None)?;
        let mut out = Vec::with_capacity(count as usize);
        for index in 0..count {
            let mut gpu = GpuId {
                index,
                uuid: String::new(),
                arch: 0,
            };
            let dev = self.device(&gpu)?;
            let mut buf = [0u8; UUID_BUFFER];
            // SAFETY: dev is a handle NVML just returned; buf is writable
            // for the length passed.
            let rc = unsafe { (self.f.uuid)(dev, buf.as_mut_ptr().cast(), UUID_BUFFER as c_uint) };
            self.check("nvmlDeviceGetUUID", rc, Some(&gpu))?;
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            gpu.uuid = String::from_utf8_lossy(&buf[..end]).into_owned();
            // SAFETY: dev is a handle NVML just returned; arch is a valid
            // out-pointer.
            let rc = unsafe { (self.f.arch)(dev, &mut gpu.arch) };
            self.check("nvmlDeviceGetArchitecture", rc, Some(&gpu))?;
            out.push(gpu);
        }
        Ok(out)
    }

    fn cc_state(&self) -> Result<CcState, GpuError> {
        let mut s = ConfComputeSystemState::default();
        // SAFETY: s is a valid out-pointer of the declared layout.
        let rc = unsafe { (self.f.cc_state)(&mut s) };
        self.check("nvmlSystemGetConfComputeState", rc, None)?;
        Ok(CcState {
            environment: s.environment,
            cc_feature: s.cc_feature,
            dev_tools_mode: s.dev_tools_mode,
        })
    }

    fn ready(&self) -> Result<bool, GpuError> {
        let mut v: c_uint = 0;
        // SAFETY: v is a valid out-pointer.
        let rc = unsafe { (self.f.get_ready)(&mut v) };
        self.check("nvmlSystemGetConfComputeGpusReadyState", rc, None)?;
        Ok(v == ACCEPTING_CLIENT_REQUESTS)
    }

    fn set_ready(&self) -> Result<(), GpuError> {
        // SAFETY: plain value argument.
        let rc = unsafe { (self.f.set_ready)(ACCEPTING_CLIENT_REQUESTS) };
        self.check("nvmlSystemSetConfComputeGpusReadyState", rc, None)
    }

    fn report(&self, gpu: &GpuId, nonce: &[u8; REPORT_NONCE_LEN]) -> Result<Vec<u8>, GpuError> {
        let dev = self.device(gpu)?;
        let mut r = Box::new(GpuAttestationReport {
            is_cec_attestation_report_present: 0,
            attestation_report_size: 0,
            cec_attestation_report_size: 0,
            nonce: *nonce,
            attestation_report: [0; CC_ATTESTATION_REPORT_SIZE],
            cec_attestation_report: [0; CC_CEC_ATTESTATION_REPORT_SIZE],
        });
        // SAFETY: dev is a live handle; r points to a struct of the layout
        // nvml.h declares, with the nonce filled in as input.
        let rc = unsafe { (self.f.report)(dev, &mut *r) };
        self.check(
            "nvmlDeviceGetConfComputeGpuAttestationReport",
            rc,
            Some(gpu),
        )?;
        sized(
            &r.attestation_report,
            r.attestation_report_size,
            gpu,
            "attestation report",
        )
    }

    fn cert_chain(&self, gpu: &GpuId) -> Result<Vec<u8>, GpuError> {
        let dev = self.device(gpu)?;
        let mut c = Box::new(GpuCertificate {
            cert_chain_size: 0,
            attestation_cert_chain_size: 0,
            cert_chain: [0; GPU_CERT_CHAIN_SIZE],
            attestation_cert_chain: [0; GPU_ATTESTATION_CERT_CHAIN_SIZE],
        });
        // SAFETY: dev is a live handle; c points to a struct of the layout
        // nvml.h declares.
        let rc = unsafe { (self.f.certificate)(dev, &mut *c) };
        self.check("nvmlDeviceGetConfComputeGpuCertificate", rc, Some(gpu))?;
        sized(
            &c.attestation_cert_chain,
            c.attestation_cert_chain_size,
            gpu,
            "attestation certificate chain",
        )
    }
}
