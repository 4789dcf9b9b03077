//! Fuzz target `range`: the body is `targets::range` (reference/fuzz/src/targets.rs), which the
//! workspace's tests also replay on the regression inputs in `regressions/range/`.
#![no_main]

#[path = "../src/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::range(data));
