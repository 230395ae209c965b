//! The rules of the house, read off the source: only `store/` speaks SQL,
//! only `deliver/` opens SMTP connections, only `web/` builds HTTP routes,
//! and no room of `src/` depends on a room that depends on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its text (unit tests left out: they
/// may reach into other rooms to set a scene).
fn sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = match text.find("#[cfg(test)]") {
                    Some(at) => text[..at].to_owned(),
                    None => text,
                };
                files.push((path.strip_prefix(&root).unwrap().to_owned(), code));
            }
        }
    }
    files.sort();
    files
}

/// The room a file belongs to: its first path component, without `.rs`.
fn room(path: &Path) -> String {
    let first = path.components().next().unwrap().as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Files outside `home` whose code contains one of `marks`, with the mark.
fn outside(home: &str, marks: &[&str]) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(path, _)| room(path) != home)
        .flat_map(|(path, code)| {
            marks
                .iter()
                .filter(|mark| code.contains(*mark))
                .map(|mark| format!("{}: `{mark}`", path.display()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn only_the_store_speaks_sql() {
    let found = outside(
        "store",
        &["sqlx::", "\"SELECT ", "\"INSERT INTO", "\"UPDATE ", "\"DELETE FROM", "\"CREATE TABLE"],
    );
    assert!(found.is_empty(), "SQL outside src/store/: {found:#?}");
}

#[test]
fn only_deliver_opens_smtp_connections() {
    let found =
        outside("deliver", &["lettre::transport", "SmtpConnection", "SmtpTransport", "SmtpClient"]);
    assert!(found.is_empty(), "SMTP outside src/deliver/: {found:#?}");
}

#[test]
fn only_web_builds_http_routes() {
    let found = outside("web", &["Router::new", "axum::routing", ".route(", "axum::serve"]);
    assert!(found.is_empty(), "HTTP routes outside src/web/: {found:#?}");
}

#[test]
fn no_room_depends_on_a_room_that_depends_on_it() {
    // What `crate::X` names, per room (the crate's re-exports count as the
    // room they come from).
    let alias = |name: &str| {
        match name {
            "Config" => "config",
            "Store" => "store",
            "Article" => "article",
            "EmailAddress" => "email",
            other => other,
        }
        .to_owned()
    };
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources() {
        let from = room(&path);
        if from == "lib" || from == "main" {
            continue;
        }
        let entry = uses.entry(from.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let to = alias(&name);
            if !to.is_empty() && to != from {
                entry.insert(to);
            }
        }
    }
    fn reaches(
        uses: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        to: &str,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        from == to
            || uses
                .get(from)
                .into_iter()
                .flatten()
                .any(|next| seen.insert(next.clone()) && reaches(uses, next, to, seen))
    }
    let cycles: Vec<String> = uses
        .iter()
        .flat_map(|(a, targets)| {
            targets
                .iter()
                .filter(|b| reaches(&uses, b, a, &mut BTreeSet::new()))
                .map(move |b| format!("{a} -> {b} -> … -> {a}"))
        })
        .collect();
    assert!(cycles.is_empty(), "rooms that depend on each other: {cycles:#?}");
}
