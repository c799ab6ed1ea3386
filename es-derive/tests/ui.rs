//! Compile-fail tests: each file in `tests/ui/` is one mistake, and its `.stderr` is the
//! reviewed error the user sees. The expected output is pinned to the stable toolchain the
//! workspace builds with (rustc 1.95); regenerate with `TRYBUILD=overwrite` after a toolchain
//! change and review every diff.

#[test]
fn misuse_is_a_compile_error_at_the_users_code() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
