//! Where a proptest suite keeps its failures: `tests/NAME.proptest-regressions`,
//! beside it. Proptest's default looks for the crate's `lib.rs` next to
//! the test's source, finds none for an integration test, and then neither
//! saves a new failure nor replays the seeds committed there.

use proptest::test_runner::{Config, FileFailurePersistence};

/// `cases` cases (or `PROPTEST_CASES` when set, for a deeper search);
/// failures kept in, and replayed first from, `regressions` (a path from
/// the package root, where `cargo test` runs a test).
pub fn config(cases: u32, regressions: &'static str) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    }
}
