//! `[feeds]`: where the feeds and pages are written, how many items a feed
//! holds, per-tag feeds, and the WebSub hub. (That the folder exposes
//! nothing private is `exposure.rs`, since it needs the other sections.)

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use super::problems::Check;

#[derive(Debug, Clone)]
pub struct Feeds {
    pub output_dir: PathBuf,
    pub items: usize,
    /// Also write feeds per tag (public/tags/TAG/…).
    pub per_tag: bool,
    /// A WebSub hub the feeds advertise and publish pings.
    pub hub: Option<Url>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFeeds {
    /// As written, for the message when it exposes something private.
    pub(super) output_dir: String,
    items: i64,
    per_tag: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    hub: Option<String>,
}

impl Default for RawFeeds {
    fn default() -> Self {
        Self { output_dir: "public".into(), items: 50, per_tag: false, hub: None }
    }
}

pub(super) fn check(raw: &RawFeeds, c: &mut Check) -> Feeds {
    let items = c.int("feeds", "items", raw.items, 1..=10_000);
    let hub = raw.hub.as_deref().filter(|h| !h.trim().is_empty()).and_then(|h| {
        Url::parse(h).ok().filter(|u| u.scheme() == "http" || u.scheme() == "https").or_else(|| {
            c.problem(
                c.place("feeds", None, "hub"),
                format!("feeds.hub `{h}` is not an http(s) URL"),
            );
            None
        })
    });
    Feeds { output_dir: c.resolve(&raw.output_dir), items, per_tag: raw.per_tag, hub }
}
