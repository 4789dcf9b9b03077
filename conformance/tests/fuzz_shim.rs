//! Replays the `shim` fuzz target's inputs (`reference/fuzz/regressions/shim/`) through its
//! body (`reference/fuzz/src/shim.rs`, compiled here too), so that the target cannot rot.

#[path = "../../reference/fuzz/src/shim.rs"]
mod shim;

#[test]
fn the_shim_target_replays_its_regression_inputs() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../reference/fuzz/regressions/shim");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        shim::shim(&std::fs::read(entry.unwrap().path()).unwrap());
        count += 1;
    }
    assert!(count >= 5, "only {count} regression inputs");
}
