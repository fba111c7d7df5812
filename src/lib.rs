//! cvm-init: the in-guest agent that attests a confidential VM to the user's
//! key broker and delivers the keys it gets back to storage and tmpfs.
//!
//! Module map (see `DESIGN.md`): `config` (what the measured image asks
//! for), `attest` (hardware evidence, one backend per TEE), `evidence`
//! (typed decoders for SNP reports and TDX quotes), `broker` (Trustee KBS
//! client), `initdata` (host-supplied config bound by HOST_DATA /
//! MRCONFIGID), `secrets` (zeroizing buffers and tmpfs delivery), `retry`
//! (the one bounded backoff loop).

pub mod attest;
pub mod boot;
pub mod broker;
pub mod config;
pub mod evidence;
#[doc(hidden)]
pub mod fuzzing;
pub mod handoff;
pub mod initdata;
pub mod logging;
pub mod retry;
pub mod secrets;
pub mod storage;
pub mod timing;
