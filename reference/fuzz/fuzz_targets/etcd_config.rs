//! Fuzz target `etcd_config`: the body is `targets::etcd_config` (reference/fuzz/src/targets.rs), which the
//! workspace's tests also replay on the regression inputs in `regressions/etcd_config/`.
#![no_main]

#[path = "../src/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::etcd_config(data));
