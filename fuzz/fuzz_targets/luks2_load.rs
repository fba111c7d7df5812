#![no_main]
//! `cvm_init::fuzzing::luks2_load` (docs/fuzzing.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvm_init::fuzzing::luks2_load(data));
