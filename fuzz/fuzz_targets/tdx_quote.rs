#![no_main]
//! `cvm_init::fuzzing::tdx_quote` (docs/fuzzing.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvm_init::fuzzing::tdx_quote(data));
