//! docs/guide.md shows code that is tested elsewhere: the lines between
//! `guide:begin` and `guide:end` in the files below must appear in the
//! guide verbatim (dedented), so the guide cannot drift from what
//! `interop-tests/guide.rs` runs.

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The marked block of `path`, dedented.
fn block(path: &str, comment: &str) -> String {
    let text = std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"));
    let begin = format!("{comment} guide:begin");
    let end = format!("{comment} guide:end");
    let lines: Vec<&str> = text.lines().collect();
    let a = lines.iter().position(|l| l.trim() == begin).unwrap_or_else(|| panic!("{path}: no `{begin}`"));
    let b = lines.iter().position(|l| l.trim() == end).unwrap_or_else(|| panic!("{path}: no `{end}`"));
    let body = &lines[a + 1..b];
    let indent = body.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    body.iter().map(|l| if l.len() >= indent { &l[indent..] } else { l.trim_start() }).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_guide_shows_the_tested_code_verbatim() {
    let guide = std::fs::read_to_string(format!("{ROOT}/docs/guide.md")).unwrap();
    for (path, comment) in [
        ("src/examples/counter.rs", "//"),
        ("erlang/lib/erlnode/examples/counter.ex", "#"),
        ("interop-tests/guide.rs", "//"),
    ] {
        let code = block(path, comment);
        assert!(code.lines().count() > 5, "{path}: the marked block is too short to be the guide's code");
        assert!(guide.contains(&code), "docs/guide.md does not show the code of {path} as it is; copy the block between its guide markers into the guide");
    }
}
