//! `[[lists]]`: the mailing lists, each with its schedule and time zone,
//! subject template, article limits and member file. A list with a problem
//! is left out, so the others are still checked.

use std::path::PathBuf;

use serde::Deserialize;

use super::problems::Check;
use crate::types::{Schedule, Slug};

#[derive(Debug, Clone)]
pub struct List {
    pub slug: Slug,
    pub name: String,
    pub description: String,
    pub schedule: Schedule,
    pub timezone: chrono_tz::Tz,
    /// A Tera template string for the Subject header.
    pub subject: String,
    pub min_articles: usize,
    pub max_articles: usize,
    /// The CSV file of members synced into the store before composing.
    pub subscribers: PathBuf,
    /// Offered on the sign-up form (`/subscribe`).
    pub public: bool,
    /// Send each reader the edition at the schedule's time on the reader's
    /// own clock (their time zone, else `timezone`).
    pub local_time: bool,
    /// Count clicks on the digest's article links (a signed redirect
    /// through `/c/`); off by default.
    pub track_clicks: bool,
    /// With `track_clicks`: record which reader clicked (once per reader
    /// and link) instead of a plain counter.
    pub individual: bool,
    /// Digests show each article's whole text (`full_text`), not only its
    /// summary; off by default, as whole texts make mail several times
    /// larger (and slower to send).
    pub full_text: bool,
    /// The cap on a digest's HTML part, in bytes (`max_html_kb`), under
    /// which compose fits it (see `compose::fit`).
    pub max_html_bytes: Option<usize>,
    /// The line mail clients show after the subject (`preheader`); the
    /// first articles' titles when unset.
    pub preheader: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawList {
    slug: String,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "default_schedule")]
    schedule: String,
    #[serde(default = "default_timezone")]
    timezone: String,
    #[serde(default = "default_subject")]
    subject: String,
    #[serde(default = "default_min_articles")]
    min_articles: i64,
    #[serde(default = "default_max_articles")]
    max_articles: i64,
    subscribers: Option<String>,
    #[serde(default = "default_true")]
    public: bool,
    #[serde(default)]
    local_time: bool,
    #[serde(default)]
    track_clicks: bool,
    #[serde(default)]
    individual: bool,
    #[serde(default)]
    full_text: bool,
    max_html_kb: Option<i64>,
    preheader: Option<String>,
}

fn default_schedule() -> String {
    "0 0 7 * * *".into()
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_subject() -> String {
    "{{ list.name }}: {{ date }}".into()
}
fn default_min_articles() -> i64 {
    1
}
fn default_max_articles() -> i64 {
    50
}
fn default_true() -> bool {
    true
}

pub(super) fn check(raw: &[RawList], c: &mut Check) -> Vec<List> {
    let mut lists = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        if let Some(list) = list(i, l, &lists, c) {
            lists.push(list);
        }
    }
    lists
}

/// The `i`-th list, unless it has a problem; every problem of a list with a
/// good slug is reported. `taken` are the lists before it.
fn list(i: usize, l: &RawList, taken: &[List], c: &mut Check) -> Option<List> {
    let slug = match Slug::parse(&l.slug) {
        Ok(slug) => slug,
        Err(e) => {
            c.problem(c.place("lists", Some(i), "slug"), format!("list slug: {e}"));
            return None;
        }
    };
    if taken.iter().any(|o| o.slug == slug) {
        c.problem(c.place("lists", Some(i), "slug"), format!("two lists have the slug `{slug}`"));
        return None;
    }
    let schedule = Schedule::parse(&l.schedule).map_err(|e| {
        c.problem(c.place("lists", Some(i), "schedule"), format!("list `{slug}`: {e}"))
    });
    let timezone = l.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
        c.problem(
            c.place("lists", Some(i), "timezone"),
            format!("list `{slug}`: `{}` is not an IANA time zone name like \"Europe/Paris\" or \"UTC\"", l.timezone),
        )
    });
    if let Err(e) = check_subject(&l.subject) {
        c.problem(
            c.place("lists", Some(i), "subject"),
            format!("list `{slug}`: subject template: {e}"),
        );
    }
    let min_articles = usize::try_from(l.min_articles).map_err(|_| {
        c.problem(
            c.place("lists", Some(i), "min_articles"),
            format!("list `{slug}`: min_articles must be 0 or more"),
        )
    });
    let max_articles = usize::try_from(l.max_articles).ok().filter(|n| *n >= 1).ok_or_else(|| {
        c.problem(
            c.place("lists", Some(i), "max_articles"),
            format!("list `{slug}`: max_articles must be 1 or more"),
        )
    });
    if l.individual && !l.track_clicks {
        c.problem(
            c.place("lists", Some(i), "individual"),
            format!("list `{slug}`: individual = true records who clicked, which needs track_clicks = true too"),
        );
        return None;
    }
    // Below 10 KB no digest fits; above Gmail's 102 KB the cap cannot stop
    // the clipping it is for.
    let max_html_bytes = match l.max_html_kb {
        None => Ok(None),
        Some(kb @ 10..=102) => Ok(Some(kb as usize * 1024)),
        Some(kb) => {
            c.problem(
                c.place("lists", Some(i), "max_html_kb"),
                format!("list `{slug}`: max_html_kb must be 10 to 102 (Gmail clips mail over 102 KB), not {kb}"),
            );
            Err(())
        }
    };
    let (Ok(schedule), Ok(timezone), Ok(min_articles), Ok(max_articles), Ok(max_html_bytes)) =
        (schedule, timezone, min_articles, max_articles, max_html_bytes)
    else {
        return None;
    };
    let subscribers =
        c.resolve(l.subscribers.as_deref().unwrap_or(&format!("subscribers/{slug}.csv")));
    Some(List {
        name: if l.name.trim().is_empty() { slug.to_string() } else { l.name.trim().to_owned() },
        slug,
        description: l.description.clone(),
        schedule,
        timezone,
        subject: l.subject.clone(),
        min_articles,
        max_articles,
        subscribers,
        public: l.public,
        local_time: l.local_time,
        track_clicks: l.track_clicks,
        individual: l.individual,
        full_text: l.full_text,
        max_html_bytes,
        preheader: l.preheader.as_deref().map(crate::text::clean_line).filter(|p| !p.is_empty()),
    })
}

/// Parses a list's subject template (Tera, one line) without rendering it;
/// compose renders it for each edition.
fn check_subject(text: &str) -> Result<(), String> {
    let mut tera = tera::Tera::default();
    tera.add_raw_template("subject", text).map_err(|e| crate::text::error_chain(&e))?;
    Ok(())
}
