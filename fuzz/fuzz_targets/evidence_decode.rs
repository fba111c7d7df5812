#![no_main]
//! `cvm_init::fuzzing::evidence_decode` (docs/fuzzing.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvm_init::fuzzing::evidence_decode(data));
