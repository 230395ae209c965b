//! `[store]`: where the store is, as a URL: `sqlite://FILE` (a relative file
//! is resolved against the config file's folder) or `postgres://…` (several
//! herald nodes sharing one database), and the size of the connection pool.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::problems::Check;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// A sqlx connection URL; relative SQLite paths already resolved.
    pub url: String,
    /// Connections to PostgreSQL a node keeps open at most.
    pub pool_size: u32,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    url: String,
    pool_size: u32,
}

impl Default for RawStore {
    fn default() -> Self {
        Self { url: "sqlite://herald.db".into(), pool_size: 10 }
    }
}

pub(super) fn check(raw: &RawStore, c: &mut Check) -> StoreConfig {
    let url = resolve_store_url(&raw.url, c.root()).unwrap_or_else(|message| {
        c.problem(c.place("store", None, "url"), message);
        String::new()
    });
    if raw.pool_size == 0 || raw.pool_size > 1000 {
        c.problem(
            c.place("store", None, "pool_size"),
            format!("store.pool_size {} is out of range: give 1 to 1000", raw.pool_size),
        );
    }
    StoreConfig { url, pool_size: raw.pool_size }
}

impl StoreConfig {
    /// How the store is opened.
    pub fn options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions { pool_size: self.pool_size }
    }
}

fn resolve_store_url(url: &str, root: &Path) -> Result<String, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return match url::Url::parse(url) {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(url.to_owned()),
            _ => Err(format!(
                "store.url `{}` is not a PostgreSQL URL: use postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                crate::store::redact(url)
            )),
        };
    }
    let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
        return Err(format!(
            "store.url `{}` is not supported: use sqlite://FILE (e.g. sqlite://herald.db) or postgres://USER:PASSWORD@HOST/DATABASE",
            crate::store::redact(url)
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
