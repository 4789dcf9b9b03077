#!/usr/bin/env python3
"""A lint of the test suite itself (run by scripts/test.sh): two ways a test can pass without
proving anything.

1. An assertion that an operation failed without saying how: `assert!(x.is_err())` (or
   `!x.is_ok()`), where Coffer's errors have a class the spec names. Assert the class
   (`unwrap_err().class()`) or the message instead. A line may opt out with a comment
   `// any error: WHY` when no class exists (a third-party API, an OS call).
2. A `#[test]` whose body asserts nothing: no `assert`, `prop_assert`, `panic!`,
   `should_panic`, and no call to a function of the tests that asserts.

Usage: scripts/lint-tests.py [ROOT]   (exit 1 with the places when either is found)
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent)
SKIP = {"target", ".venv", ".git", "node_modules"}
IS_ERR = re.compile(r"assert!\s*\(\s*(?:[^;!]*?\.is_err\(\)|!\s*[^;]*?\.is_ok\(\))\s*[,)]", re.S)
FN = re.compile(r"\bfn\s+([a-z_][a-z0-9_]*)\s*(<[^>]*>)?\s*\(")
# trycmd's TestCases compares every case's output and fails the test when one differs.
ASSERTS = re.compile(r"\b(assert\w*!|prop_assert\w*!|panic!|unreachable!|should_panic|trycmd::TestCases)")


def rust_files():
    for path in ROOT.rglob("*.rs"):
        if SKIP.intersection(path.parts):
            continue
        yield path


def body_at(text, start):
    """The text of the brace block that opens at or after `start`."""
    open_at = text.index("{", start)
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at:i + 1]
    return text[open_at:]


def test_sections(path, text):
    """Integration tests are whole files; unit tests are `mod tests` blocks."""
    if "tests" in path.parts or path.parent.name == "fuzz_targets":
        return [text]
    sections = []
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod\s+\w+\s*\{", text):
        sections.append(body_at(text, m.start()))
    return sections


def main():
    problems = []
    sections = {p: test_sections(p, p.read_text(encoding="utf-8")) for p in rust_files()}
    # Functions (in any file: shared checks live in test-only modules) whose bodies assert:
    # a test that calls one asserts.
    asserting = set()
    for path in rust_files():
        text = path.read_text(encoding="utf-8")
        for m in FN.finditer(text):
            try:
                body = body_at(text, m.end())
            except ValueError:
                continue
            if ASSERTS.search(body):
                asserting.add(m.group(1))
    for path, texts in sections.items():
        rel = path.relative_to(ROOT)
        for text in texts:
            for m in IS_ERR.finditer(text):
                line_end = text.find("\n", m.end())
                line = text[text.rfind("\n", 0, m.start()) + 1:line_end]
                if "// any error:" in text[m.start():line_end + 1] or "// any error:" in line:
                    continue
                snippet = " ".join(m.group(0).split())[:100]
                problems.append(f"{rel}: assertion without a class: {snippet}")
            for m in re.finditer(r"#\[test\]", text):
                fn = FN.search(text, m.end())
                if fn is None:
                    continue
                header = text[m.end():fn.start()]
                body = body_at(text, fn.end())
                if ASSERTS.search(header) or ASSERTS.search(body):
                    continue
                called = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?:::<[^>]*>)?\(", body))
                if called & asserting:
                    continue
                problems.append(f"{rel}: test {fn.group(1)} asserts nothing")
    for problem in sorted(set(problems)):
        print(problem)
    print(f"lint-tests: {len(set(problems))} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
