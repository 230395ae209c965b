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
    /// The writing direction of the site's language: `ltr` or `rtl`
    /// (`site.direction`, else derived from `language`).
    pub direction: Direction,
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
    direction: Option<String>,
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
            direction: None,
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
    let direction = match raw.direction.as_deref().map(str::trim) {
        None | Some("") => Direction::of_language(&raw.language),
        Some("ltr") => Direction::Ltr,
        Some("rtl") => Direction::Rtl,
        Some(other) => {
            c.problem(
                c.place("site", None, "direction"),
                format!("site.direction must be \"ltr\" or \"rtl\", not {other:?} (leave it out to derive it from site.language)"),
            );
            Direction::Ltr
        }
    };
    Site {
        title: raw.title.trim().to_owned(),
        base_url,
        language: raw.language.clone(),
        direction,
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

/// Which way the site's text runs, for `dir` on every page and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ltr,
    Rtl,
}

/// Languages written right to left (ISO 639 codes), and the scripts that
/// make any language right to left (ISO 15924 codes, `pa-Arab`).
const RTL_LANGUAGES: &[&str] =
    &["ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "nqo", "ps", "sd", "syr", "ug", "ur", "yi"];
const RTL_SCRIPTS: &[&str] = &["adlm", "arab", "hebr", "nkoo", "rohg", "syrc", "thaa"];

impl Direction {
    /// The direction a BCP 47 language tag (`ar`, `he-IL`, `pa-Arab`) is
    /// written in.
    pub fn of_language(tag: &str) -> Self {
        let mut subtags = tag.trim().split(['-', '_']).map(str::to_ascii_lowercase);
        let rtl = subtags.next().is_some_and(|l| RTL_LANGUAGES.contains(&l.as_str()))
            || subtags.any(|s| RTL_SCRIPTS.contains(&s.as_str()));
        if rtl {
            Self::Rtl
        } else {
            Self::Ltr
        }
    }

    /// `ltr` or `rtl`, as HTML's `dir` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ltr => "ltr",
            Self::Rtl => "rtl",
        }
    }
}

#[cfg(test)]
mod direction_tests {
    use super::Direction;

    #[test]
    fn right_to_left_languages_and_scripts_are_recognised() {
        for tag in ["ar", "he-IL", "fa", "ur", "pa-Arab", "AR_eg"] {
            assert_eq!(Direction::of_language(tag), Direction::Rtl, "{tag}");
        }
        for tag in ["en", "pt-PT", "pa", "arn", "hr", "zh-Hant"] {
            assert_eq!(Direction::of_language(tag), Direction::Ltr, "{tag}");
        }
    }
}
