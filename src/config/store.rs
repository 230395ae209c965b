//! `[store]`: where the SQLite database is, as a sqlx URL whose relative
//! file is resolved against the config file's folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::problems::Check;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// A sqlx connection URL; relative SQLite paths already resolved.
    pub url: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    url: String,
}

impl Default for RawStore {
    fn default() -> Self {
        Self { url: "sqlite://herald.db".into() }
    }
}

pub(super) fn check(raw: &RawStore, c: &mut Check) -> StoreConfig {
    let url = resolve_store_url(&raw.url, c.root()).unwrap_or_else(|message| {
        c.problem(c.place("store", None, "url"), message);
        String::new()
    });
    StoreConfig { url }
}

fn resolve_store_url(url: &str, root: &Path) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
        return Err(format!(
            "store.url `{url}` is not supported: use sqlite://FILE (e.g. sqlite://herald.db)"
        ));
    };
    let (file, query) = rest.split_once('?').map_or((rest, None), |(f, q)| (f, Some(q)));
    if file.is_empty() {
        return Err("store.url names no file: use sqlite://FILE (e.g. sqlite://herald.db)".into());
    }
    if file == ":memory:" {
        return Ok(url.to_owned());
    }
    let path = if Path::new(file).is_absolute() { PathBuf::from(file) } else { root.join(file) };
    Ok(match query {
        Some(q) => format!("sqlite://{}?{q}", path.display()),
        None => format!("sqlite://{}", path.display()),
    })
}
