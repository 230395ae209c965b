//! Configuration: `herald.toml` plus `HERALD_<SECTION>_<KEY>` environment
//! overrides, parsed once into typed values. Every problem found is reported
//! with its place (file and line, or the environment variable), all at once,
//! so `herald check` can list them together.
//!
//! Secrets never come from the file: the SMTP password is read from
//! `HERALD_MAIL_SMTP_PASSWORD` and the signing secret from `HERALD_SECRET`.
//!
//! This file holds `Config` and the order of the work (`parse`). Each
//! section's file owns its raw serde struct (as written, with its defaults),
//! its typed struct and its rules, and checks itself through one `Check`
//! (`problems.rs`); `env.rs` applies the environment before that, and
//! `exposure.rs` checks the one rule that spans sections after.

mod bounces;
mod collect;
mod daemon;
pub(crate) mod env;
mod exposure;
mod feeds;
pub(crate) mod imap;
mod lists;
mod mail;
mod problems;
mod site;
mod sources;
mod store;

/// The smallest good configuration, for tests across the crate.
#[cfg(test)]
pub(crate) const GOOD: &str = r#"
[site]
title = "Example News"
base_url = "https://news.example.com"

[[sources]]
name = "blog"
kind = "dir"
path = "content"

[[lists]]
slug = "daily"
name = "Daily"

[mail]
from = "Example News <news@example.com>"
"#;

#[cfg(test)]
mod tests;
mod web;
mod webhooks;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use bounces::Bounces;
pub use collect::Collect;
pub use daemon::{CatchUp, Daemon};
pub use env::{ENV_ADMIN_TOKEN, ENV_IMAP_PASSWORD, ENV_SECRET, ENV_SMTP_PASSWORD};
pub use feeds::Feeds;
pub use imap::{Imap, ImapTls};
pub use lists::List;
pub use mail::{Dkim, DkimAlgorithm, Mail, Relay, Transport};
pub use problems::{ConfigError, Place, Problem};
pub use site::{Direction, Site};
pub use sources::{Source, SourceKind};
pub use store::StoreConfig;
pub use web::Web;
pub use webhooks::{Webhooks, ENV_MAILGUN_KEY, ENV_POSTMARK_PASSWORD, ENV_WEBHOOK_SECRET};

use problems::{Check, Locator};

/// The validated configuration. Paths are absolute (resolved against the
/// folder of the config file).
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file this was read from.
    pub path: PathBuf,
    /// The folder relative paths are resolved against.
    pub root: PathBuf,
    pub site: Site,
    pub store: StoreConfig,
    pub sources: Vec<Source>,
    pub collect: Collect,
    pub feeds: Feeds,
    pub lists: Vec<List>,
    pub mail: Mail,
    pub web: Web,
    pub daemon: Daemon,
    pub bounces: Bounces,
}

impl Config {
    pub fn list(&self, slug: &str) -> Option<&List> {
        self.lists.iter().find(|l| l.slug.as_str() == slug)
    }
}

/// The file as written: each section's raw struct, with its defaults for
/// what the file leaves out. Unknown keys are errors, with their line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    site: site::RawSite,
    store: store::RawStore,
    sources: Vec<sources::RawSource>,
    collect: collect::RawCollect,
    feeds: feeds::RawFeeds,
    lists: Vec<lists::RawList>,
    mail: mail::RawMail,
    web: web::RawWeb,
    daemon: daemon::RawDaemon,
    bounces: bounces::RawBounces,
}

/// Loads `path`, applies the `HERALD_*` overrides found in the process
/// environment, and validates everything.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|cause| ConfigError::Read { path: path.to_owned(), cause })?;
    let env: Vec<(String, String)> =
        std::env::vars().filter(|(k, _)| k.starts_with("HERALD_")).collect();
    parse(path, &text, &env)
}

/// Parses config text with the given environment overrides.
pub fn parse(path: &Path, text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut raw: RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::syntax(path, text, &e))?;
    let overrides = env::apply(&mut raw, env);
    let mut check = Check::new(Locator { path, text }, overrides);
    // Problems are listed in the order they are found: this order is the
    // order `herald check` prints them in.
    let site = site::check(&raw.site, &mut check);
    let store = store::check(&raw.store, &mut check);
    let sources = sources::check(&raw.sources, &mut check);
    let collect = collect::check(&raw.collect, &mut check);
    let daemon = daemon::check(&raw.daemon, &mut check);
    let feeds = feeds::check(&raw.feeds, &mut check);
    let lists = lists::check(&raw.lists, &mut check);
    let mail = mail::check(&raw.mail, &mut check);
    let web = web::check(&raw.web, &mut check);
    let bounces =
        bounces::check(&raw.bounces, mail.suppress_after, mail.bounce_address.as_ref(), &mut check);
    let config = Config {
        path: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
        root: check.root().to_owned(),
        site,
        store,
        sources,
        collect,
        feeds,
        lists,
        mail,
        web,
        daemon,
        bounces,
    };
    if let Some(message) = exposure::problem(&config, path, &raw.feeds.output_dir) {
        check.problem(check.place("feeds", None, "output_dir"), message);
    }
    check.finish(config)
}
