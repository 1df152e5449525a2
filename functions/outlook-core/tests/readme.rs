//! The README's generated sections stay equal to the code they describe.
//! Regenerate with `UPDATE_README=1 cargo test -p outlook-core --test readme`.

use std::path::PathBuf;

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md")
}

fn check_section(name: &str, generated: &str) {
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).expect("README.md at the repository root");
    let start = format!("<!-- {name}:start -->\n");
    let end = format!("<!-- {name}:end -->");
    let from = readme
        .find(&start)
        .unwrap_or_else(|| panic!("README has no {start:?} marker"))
        + start.len();
    let to = readme[from..]
        .find(&end)
        .unwrap_or_else(|| panic!("README has no {end:?} marker"))
        + from;
    if &readme[from..to] == generated {
        return;
    }
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{}{}", &readme[..from], generated, &readme[to..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "README section '{name}' is out of date with the code; run \
         `UPDATE_README=1 cargo test -p outlook-core --test readme`.\nExpected:\n{generated}"
    );
}

#[test]
fn troubleshooting_table_matches_the_status_reasons() {
    check_section(
        "troubleshooting",
        &outlook_core::health::troubleshooting_markdown(),
    );
}

#[test]
fn permissions_tables_match_what_the_code_requests() {
    use outlook_core::connect::{APPLICATION_PERMISSIONS, DELEGATED_SCOPES, SHARED_MAILBOX_SCOPES};
    let table = |rows: &[(&str, &str)]| {
        let mut out = String::from("| Permission | Why |\n|---|---|\n");
        for (name, why) in rows {
            out.push_str(&format!("| `{name}` | {why} |\n"));
        }
        out
    };
    check_section("app-permissions", &table(APPLICATION_PERMISSIONS));
    check_section("delegated-scopes", &table(DELEGATED_SCOPES));
    check_section("shared-scopes", &table(SHARED_MAILBOX_SCOPES));
}
