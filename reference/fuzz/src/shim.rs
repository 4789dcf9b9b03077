//! The fuzz target `shim`: the runner reading an adapter's output (spec/conformance.md §7),
//! which a third party's program writes and the runner must survive whatever it is. Replayed
//! on `regressions/shim/` by `conformance/tests/fuzz_shim.rs`.

use coffer_conformance::case::Status;
use coffer_conformance::shim::{parse_answer, read_line};
use coffer_conformance::suites::client_format::{judge, Expect};
use std::io::BufReader;

/// Every line of `data` as an adapter's output: bounded lines, UTF-8 or refused, JSON or
/// refused, and each answer judged against both kinds of expectation. A pass needs the exact
/// output or the exact class.
pub(crate) fn shim(data: &[u8]) {
    let expectations: [Expect; 2] = [
        Ok(("plaintext", "00ff".to_owned())),
        Err("corrupt".to_owned()),
    ];
    let mut reader = BufReader::with_capacity(16, data);
    while let Ok(Some(line)) = read_line(&mut reader) {
        assert!(!line.contains('\n'));
        let Ok(answer) = parse_answer(&line) else {
            continue;
        };
        for expect in &expectations {
            let (status, _) = judge(expect, &answer);
            if status == Status::Pass {
                match expect {
                    Ok((field, want)) => assert_eq!(answer[*field].as_str(), Some(want.as_str())),
                    Err(class) => assert_eq!(answer["error"].as_str(), Some(class.as_str())),
                }
                assert_ne!(answer["unimplemented"], true);
            }
        }
    }
}
