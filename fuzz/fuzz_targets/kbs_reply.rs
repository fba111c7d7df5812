#![no_main]
//! `cvm_init::fuzzing::kbs_reply` (docs/fuzzing.md).
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvm_init::fuzzing::kbs_reply(data));
