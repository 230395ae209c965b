//! `[site]`: the publication itself (its name, address, language, author,
//! postal address) and the folder of its templates.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::problems::Check;
use crate::types::BaseUrl;

#[derive(Debug, Clone)]
pub struct Site {
    pub title: String,
    pub base_url: BaseUrl,
    pub language: String,
    pub author: Option<String>,
    pub description: String,
    pub templates_dir: PathBuf,
    /// The publisher's postal address, on one line, for every digest's
    /// footer (CAN-SPAM asks for it in commercial mail).
    pub postal_address: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSite {
    title: String,
    base_url: String,
    language: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<String>,
    description: String,
    templates_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    postal_address: Option<String>,
}

impl Default for RawSite {
    fn default() -> Self {
        Self {
            title: "herald".into(),
            base_url: "http://127.0.0.1:8080/".into(),
            language: "en".into(),
            author: None,
            description: String::new(),
            templates_dir: "templates".into(),
            postal_address: None,
        }
    }
}

pub(super) fn check(raw: &RawSite, c: &mut Check) -> Site {
    let base_url = BaseUrl::parse(&raw.base_url).unwrap_or_else(|e| {
        c.problem(c.place("site", None, "base_url"), format!("site.base_url: {e}"));
        BaseUrl::parse("http://127.0.0.1:8080/").expect("a constant URL parses")
    });
    if raw.title.trim().is_empty() {
        c.problem(
            c.place("site", None, "title"),
            "site.title is empty: give the publication a name",
        );
    }
    Site {
        title: raw.title.trim().to_owned(),
        base_url,
        language: raw.language.clone(),
        author: raw.author.clone().filter(|a| !a.trim().is_empty()),
        description: raw.description.clone(),
        templates_dir: c.resolve(&raw.templates_dir),
        // Written on several lines or one, shown on one.
        postal_address: raw
            .postal_address
            .as_deref()
            .map(|a| {
                a.lines()
                    .map(crate::text::clean_line)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|a| !a.is_empty()),
    }
}
