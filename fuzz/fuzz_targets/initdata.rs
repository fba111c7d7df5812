#![no_main]
//! `cvm_init::fuzzing::initdata` (docs/fuzzing.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvm_init::fuzzing::initdata(data));
