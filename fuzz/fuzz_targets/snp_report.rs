#![no_main]
//! `cvm_init::fuzzing::snp_report` (docs/fuzzing.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvm_init::fuzzing::snp_report(data));
