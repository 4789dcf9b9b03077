//! Fuzz target `hsm_uri`: the body is `targets::hsm_uri` (reference/fuzz/src/targets.rs), which the
//! workspace's tests also replay on the regression inputs in `regressions/hsm_uri/`.
#![no_main]

#[path = "../src/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::hsm_uri(data));
