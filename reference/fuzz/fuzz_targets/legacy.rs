//! Fuzz target `legacy`: the body is `targets::legacy` (reference/fuzz/src/targets.rs), which the
//! workspace's tests also replay on the regression inputs in `regressions/legacy/`.
#![no_main]

#[path = "../src/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::legacy(data));
