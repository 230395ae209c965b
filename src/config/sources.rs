//! `[[sources]]`: where articles come from (a folder of Markdown or an
//! upstream feed), with the tags and filters applied to what each gives.
//! A source with a problem is left out, so the others are still checked.

use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use super::problems::Check;
use crate::types::Slug;

#[derive(Debug, Clone)]
pub struct Source {
    pub name: Slug,
    pub kind: SourceKind,
    /// Tags added to every article of this source.
    pub tags: Vec<String>,
    /// Keep only articles with one of these tags (empty: all).
    pub include_tags: Vec<String>,
    /// Drop articles with any of these tags.
    pub exclude_tags: Vec<String>,
    /// Keep only articles whose title matches.
    pub title_pattern: Option<regex::Regex>,
    /// On a feed's first collect, how many of its newest entries count as
    /// new for digests (all go into the feeds).
    pub backfill: usize,
}

impl Source {
    /// Whether the source's filters keep an article.
    pub fn keeps(&self, article: &crate::article::Article) -> bool {
        let has = |tags: &[String]| {
            article.tags.iter().any(|t| tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
        };
        (self.include_tags.is_empty() || has(&self.include_tags))
            && !has(&self.exclude_tags)
            && self.title_pattern.as_ref().is_none_or(|p| p.is_match(&article.title))
    }
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    /// A folder of Markdown files with front matter.
    Dir { path: PathBuf },
    /// An upstream RSS, Atom or JSON feed fetched over HTTP(S).
    Feed {
        url: Url,
        /// Allow hosts that resolve to loopback or private addresses.
        allow_private: bool,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    name: String,
    kind: String,
    path: Option<String>,
    url: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    allow_private: bool,
    #[serde(default)]
    include_tags: Vec<String>,
    #[serde(default)]
    exclude_tags: Vec<String>,
    title_pattern: Option<String>,
    #[serde(default)]
    backfill: i64,
}

pub(super) fn check(raw: &[RawSource], c: &mut Check) -> Vec<Source> {
    let mut sources = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        if let Some(source) = source(i, s, &sources, c) {
            sources.push(source);
        }
    }
    sources
}

/// The `i`-th source, unless it has a problem that leaves it unusable.
/// `taken` are the sources before it.
fn source(i: usize, s: &RawSource, taken: &[Source], c: &mut Check) -> Option<Source> {
    let name = match Slug::parse(&s.name) {
        Ok(name) => name,
        Err(e) => {
            c.problem(c.place("sources", Some(i), "name"), format!("source name: {e}"));
            return None;
        }
    };
    if taken.iter().any(|o| o.name == name) {
        c.problem(c.place("sources", Some(i), "name"), format!("two sources are named `{name}`"));
        return None;
    }
    let kind = kind(i, s, &name, c)?;
    if matches!(kind, SourceKind::Dir { .. }) && (s.url.is_some() || s.allow_private) {
        c.problem(
            c.place("sources", Some(i), "url"),
            format!("source `{name}`: url and allow_private apply to kind = \"feed\" only"),
        );
    }
    let title_pattern = match s.title_pattern.as_deref().map(regex::Regex::new).transpose() {
        Ok(p) => p,
        Err(e) => {
            c.problem(
                c.place("sources", Some(i), "title_pattern"),
                format!("source `{name}`: title_pattern: {e}"),
            );
            return None;
        }
    };
    let Ok(backfill) = usize::try_from(s.backfill) else {
        c.problem(
            c.place("sources", Some(i), "backfill"),
            format!("source `{name}`: backfill must be 0 or more"),
        );
        return None;
    };
    Some(Source {
        name,
        kind,
        tags: s.tags.clone(),
        include_tags: s.include_tags.clone(),
        exclude_tags: s.exclude_tags.clone(),
        title_pattern,
        backfill,
    })
}

/// What the `i`-th source, named `name`, reads: `kind` with the key that
/// kind needs.
fn kind(i: usize, s: &RawSource, name: &Slug, c: &mut Check) -> Option<SourceKind> {
    match s.kind.as_str() {
        "dir" => match &s.path {
            Some(p) => Some(SourceKind::Dir { path: c.resolve(p) }),
            None => {
                c.problem(
                    c.place("sources", Some(i), "kind"),
                    format!("source `{name}` has kind = \"dir\" but no path = \"FOLDER\""),
                );
                None
            }
        },
        "feed" => match s.url.as_deref().map(Url::parse) {
            Some(Ok(url)) if url.scheme() == "http" || url.scheme() == "https" => {
                Some(SourceKind::Feed { url, allow_private: s.allow_private })
            }
            Some(_) => {
                c.problem(
                    c.place("sources", Some(i), "url"),
                    format!("source `{name}`: url must be an http:// or https:// URL of a feed"),
                );
                None
            }
            None => {
                c.problem(
                    c.place("sources", Some(i), "kind"),
                    format!("source `{name}` has kind = \"feed\" but no url = \"https://…\""),
                );
                None
            }
        },
        other => {
            c.problem(
                c.place("sources", Some(i), "kind"),
                format!("source `{name}`: unknown kind `{other}` (expected \"dir\" or \"feed\")"),
            );
            None
        }
    }
}
