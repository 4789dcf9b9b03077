//! Fuzz target `shim`: the body is `shim::shim` (reference/fuzz/src/shim.rs), which
//! `conformance/tests/fuzz_shim.rs` also replays on the regression inputs in `regressions/shim/`.
#![no_main]

#[path = "../src/shim.rs"]
mod shim;

libfuzzer_sys::fuzz_target!(|data: &[u8]| shim::shim(data));
