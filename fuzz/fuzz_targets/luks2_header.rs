#![no_main]
//! `cvm_init::fuzzing::luks2_header` (docs/fuzzing.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvm_init::fuzzing::luks2_header(data));
