//! `edgecron next` through the real binary: no service, no database.

mod common;

use std::process::Command;

fn next(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::binary())
        .arg("next")
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn prints_instants_with_the_zone_offset_and_dst_notes() {
    let (code, out, _) = next(&[
        "--tz",
        "America/New_York",
        "--from",
        "2025-03-08T12:00:00Z",
        "--count",
        "2",
        "30 2 * * *",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "2025-03-09T03:00:00-04:00 (moved: 02:30 does not exist)\n2025-03-10T02:30:00-04:00\n"
    );
}

#[test]
fn an_unquoted_expression_is_joined_and_five_is_the_default_count() {
    let (code, out, _) = next(&["--from", "2025-01-01T00:00:00Z", "0", "9", "*", "*", "1"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0], "2025-01-06T09:00:00+00:00");
    assert_eq!(lines[1], "2025-01-13T09:00:00+00:00");
}

#[test]
fn invalid_input_exits_2_with_the_reason_on_stderr() {
    for (args, reason) in [
        (&["61 * * * *"][..], "minute: 61 is out of range 0-59"),
        (&["0 0 30 2 *"], "never fires"),
        (&["* * * *"], "expected 5 or 6 fields, found 4"),
        (
            &["--tz", "Mars/Base", "* * * * *"],
            "unknown zone Mars/Base",
        ),
        (&["--count", "0", "* * * * *"], "count"),
        (&["--from", "yesterday", "* * * * *"], "from"),
    ] {
        let (code, out, err) = next(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
}
