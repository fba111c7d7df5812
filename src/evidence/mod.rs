//! Typed decoders for hardware evidence: SNP attestation reports and TDX
//! quotes. Shared by the agent (logging what policies check), the operator's
//! `evidence decode` command and the development broker.

pub mod snp;
pub mod tdx;
