//! Fuzz target `key_file`: the body is `targets::key_file` (reference/fuzz/src/targets.rs), which the
//! workspace's tests also replay on the regression inputs in `regressions/key_file/`.
#![no_main]

#[path = "../src/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::key_file(data));
