//! CLI behaviour as snapshot files (`tests/cmd/*.toml`): each names a command and holds its
//! exact standard output, standard error and exit code. Review a change as a text diff;
//! `TRYCMD=overwrite cargo test -p coffer --test cli_snapshots` rewrites the files.

#[test]
fn cli_snapshots() {
    trycmd::TestCases::new()
        .register_bin("coffer", coffer_testkit::coffer_exe())
        .case("tests/cmd/*.toml");
}
