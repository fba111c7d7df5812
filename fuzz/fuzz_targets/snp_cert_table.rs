#![no_main]
//! `cvm_init::fuzzing::snp_cert_table` (docs/fuzzing.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvm_init::fuzzing::snp_cert_table(data));
