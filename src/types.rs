//! Parse-don't-validate newtypes for values that come from configuration and
//! front matter: list and article slugs, the site's base URL, cron schedules.
//! Once a value has one of these types it is known to be well formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// A URL-safe identifier: lowercase ASCII letters, digits and `-`, with `/`
/// allowed between segments (article slugs may be nested, list slugs may not).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{value}` is not a valid slug: {reason}")]
pub struct SlugError {
    value: String,
    reason: &'static str,
}

impl Slug {
    /// A slug for a list: one segment, `[a-z0-9-]+`.
    pub fn parse(value: &str) -> Result<Self, SlugError> {
        let err = |reason| SlugError { value: value.to_owned(), reason };
        if value.is_empty() {
            return Err(err("it is empty"));
        }
        if value.len() > 64 {
            return Err(err("it is longer than 64 characters"));
        }
        if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(err("use only lowercase letters a-z, digits and '-'"));
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(err("it must not start or end with '-'"));
        }
        Ok(Self(value.to_owned()))
    }

    /// A slug for an article: one or more segments separated by `/`.
    pub fn parse_path(value: &str) -> Result<Self, SlugError> {
        let trimmed = value.trim_matches('/');
        if trimmed.is_empty() {
            return Err(SlugError { value: value.to_owned(), reason: "it is empty" });
        }
        for segment in trimmed.split('/') {
            Self::parse(segment).map_err(|e| SlugError { value: value.to_owned(), ..e })?;
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Turns free text (a file name, a title) into a slug: lowercase ASCII,
    /// other characters folded to `-`. Returns `None` when nothing usable is left.
    pub fn slugify(text: &str) -> Option<Self> {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            } else if !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
        }
        let out = out.trim_end_matches('-');
        let out = if out.len() > 64 { out[..64].trim_end_matches('-') } else { out };
        Self::parse(out).ok()
    }

    /// The slug that names an article within its source, in its page's URL
    /// (`<base_url><source>/<slug>/`) and in `herald articles`: a pure
    /// function of the article's guid, so it is the same on every collect
    /// and every machine, and a link mailed once keeps working. A guid that
    /// is already a slug path (a `dir` article's slug, many upstream ids) is
    /// its own slug; any other (`tag:…`, `urn:uuid:…`, free text) becomes
    /// its slugified last segment, at most 40 characters, then `-` and the
    /// first 12 hex digits of the guid's SHA-256, which keeps two guids with
    /// the same last words apart.
    pub fn of_guid(guid: &str) -> Self {
        use sha2::{Digest, Sha256};
        if let Ok(slug) = Self::parse_path(guid) {
            if slug.0 == guid {
                return slug;
            }
        }
        let hash = hex::encode(Sha256::digest(guid.as_bytes()));
        let hash = &hash[..12];
        let words = guid
            .rsplit(['/', ':', '#', '?', '='])
            .find_map(Self::slugify)
            .map(|s| s.0[..s.0.len().min(40)].trim_end_matches('-').to_owned())
            .filter(|s| !s.is_empty());
        // Slugified words (no dash at either end, at most 40 characters),
        // a dash and 12 hex digits: a slug of at most 53 characters.
        match words {
            Some(words) => Self(format!("{words}-{hash}")),
            None => Self(hash.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Slug {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Slug::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An article named on the command line as `SOURCE/SLUG`: the source's
/// name and the article's slug within it (`Slug::of_guid` of its guid, as
/// `herald articles list` shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArticleRef {
    pub source: Slug,
    pub slug: Slug,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArticleRefError {
    #[error("`{0}` is not SOURCE/SLUG (e.g. blog/market-day, as `herald articles list` shows)")]
    Shape(String),
    #[error("`{value}`: {cause}")]
    Part { value: String, cause: SlugError },
}

impl FromStr for ArticleRef {
    type Err = ArticleRefError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (source, slug) =
            value.split_once('/').ok_or_else(|| ArticleRefError::Shape(value.to_owned()))?;
        let part = |cause| ArticleRefError::Part { value: value.to_owned(), cause };
        if slug.is_empty() || slug.starts_with('/') || slug.ends_with('/') {
            return Err(ArticleRefError::Shape(value.to_owned()));
        }
        Ok(Self {
            source: Slug::parse(source).map_err(part)?,
            slug: Slug::parse_path(slug).map_err(part)?,
        })
    }
}

impl fmt::Display for ArticleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.source, self.slug)
    }
}

/// The public root of the site: an absolute http(s) URL ending in `/`, so
/// that joining a relative path never drops the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(Url);

#[derive(Debug, thiserror::Error)]
#[error("`{value}` is not a usable base URL: {reason}")]
pub struct BaseUrlError {
    value: String,
    reason: String,
}

impl BaseUrl {
    pub fn parse(value: &str) -> Result<Self, BaseUrlError> {
        let err = |reason: String| BaseUrlError { value: value.to_owned(), reason };
        let mut url = Url::parse(value).map_err(|e| err(e.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(err("it must start with http:// or https://".into()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(err("it has no host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(err("it must not have a query or a fragment".into()));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Self(url))
    }

    /// An absolute URL for a path relative to the site root.
    pub fn join(&self, path: &str) -> Url {
        // A relative path against an absolute http(s) base cannot fail to join
        // unless it is itself malformed; fall back to the base in that case.
        self.0.join(path.trim_start_matches('/')).unwrap_or_else(|_| self.0.clone())
    }

    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or("localhost")
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A cron schedule with seconds first (six or seven fields), as the daemon's
/// scheduler reads it: `0 0 7 * * *` is every day at 07:00.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    schedule: cron::Schedule,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "`{value}` is not a cron schedule (six fields, seconds first, e.g. \"0 0 7 * * *\"): {reason}"
)]
pub struct ScheduleError {
    value: String,
    reason: String,
}

impl Schedule {
    pub fn parse(value: &str) -> Result<Self, ScheduleError> {
        let fields = value.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(ScheduleError {
                value: value.to_owned(),
                reason: format!("it has {fields} fields"),
            });
        }
        let schedule = cron::Schedule::from_str(value)
            .map_err(|e| ScheduleError { value: value.to_owned(), reason: e.to_string() })?;
        Ok(Self { text: value.to_owned(), schedule })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The next time this schedule fires after `after`, in `tz`.
    pub fn next_after<Tz: chrono::TimeZone>(
        &self,
        after: &chrono::DateTime<Tz>,
    ) -> Option<chrono::DateTime<Tz>> {
        self.schedule.after(after).next()
    }

    /// The next time after `after` (UTC) that this schedule fires on the
    /// wall clock of `tz`. Local times are what the schedule names, so a
    /// list at 07:00 Europe/Berlin fires at 07:00 on both sides of a clock
    /// change.
    pub fn next_fire(
        &self,
        tz: chrono_tz::Tz,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.next_after(&after.with_timezone(&tz)).map(|t| t.with_timezone(&chrono::Utc))
    }

    /// The last time at or before `at` (UTC) that this schedule fired in `tz`.
    pub fn last_fire(
        &self,
        tz: chrono_tz::Tz,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        // `after` excludes its start; a second later includes `at` itself.
        let from = (at + chrono::Duration::seconds(1)).with_timezone(&tz);
        self.schedule.after(&from).next_back().map(|t| t.with_timezone(&chrono::Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn article_refs_are_source_then_slug() {
        let r: ArticleRef = "blog/2026/hello".parse().unwrap();
        assert_eq!((r.source.as_str(), r.slug.as_str()), ("blog", "2026/hello"));
        assert_eq!(r.to_string(), "blog/2026/hello");
        for bad in ["blog", "blog/", "/x", "Blog/x", "blog/X", "blog//x", "blog/x/"] {
            assert!(bad.parse::<ArticleRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn guids_give_stable_slugs() {
        // A slug is its own page slug.
        assert_eq!(Slug::of_guid("market-day").as_str(), "market-day");
        assert_eq!(Slug::of_guid("2026/hello").as_str(), "2026/hello");
        // Anything else: the last words, then a hash of the whole guid.
        let tag = Slug::of_guid("tag:notices.example.org,2026:Lost Dog/Found?");
        assert!(tag.as_str().starts_with("found-"), "{tag}");
        assert_eq!(tag.as_str().len(), "found-".len() + 12);
        assert_eq!(tag, Slug::of_guid("tag:notices.example.org,2026:Lost Dog/Found?"));
        assert_ne!(tag, Slug::of_guid("tag:notices.example.org,2026:Lost Cat/Found?"));
        let uuid = Slug::of_guid("urn:uuid:6F1C2A52-0D7E-4D8E-9A55-1F2B3C4D5E6F");
        assert!(uuid.as_str().starts_with("6f1c2a52-0d7e-4d8e-9a55-1f2b3c4d5e6f-"), "{uuid}");
        assert_eq!(Slug::of_guid("«»").as_str().len(), 12);
        let long = Slug::of_guid(&format!("x:{}", "word ".repeat(30)));
        assert!(long.as_str().len() <= 40 + 1 + 12, "{long}");
        assert!(!Slug::of_guid("/a/").as_str().starts_with('/'));
        for guid in ["market-day", "tag:x,2026:Lost Dog/Found?", "«»", "-a-", "a//b", "/a/"] {
            let slug = Slug::of_guid(guid);
            assert_eq!(Slug::parse_path(slug.as_str()).as_ref(), Ok(&slug), "{guid}");
        }
    }

    /// Every fire time of `schedule` in `tz` between two UTC instants.
    fn fires(
        schedule: &Schedule,
        tz: chrono_tz::Tz,
        from: &str,
        to: &str,
    ) -> Vec<chrono::DateTime<chrono_tz::Tz>> {
        let (mut at, end) = (utc(from), utc(to));
        let mut out = Vec::new();
        while let Some(next) = schedule.next_fire(tz, at).filter(|t| *t < end) {
            out.push(next.with_timezone(&tz));
            at = next;
        }
        out
    }

    fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_daily_list_fires_once_a_day_at_its_local_time_across_both_2026_clock_changes() {
        let berlin = chrono_tz::Europe::Berlin;
        let seven = Schedule::parse("0 0 7 * * *").unwrap();
        // Clocks go forward on 29 March 2026 and back on 25 October 2026.
        for (from, to, first_offset, last_offset) in [
            ("2026-03-26T00:00:00Z", "2026-04-02T00:00:00Z", 1, 2),
            ("2026-10-22T00:00:00Z", "2026-10-29T00:00:00Z", 2, 1),
        ] {
            let times = fires(&seven, berlin, from, to);
            assert_eq!(times.len(), 7, "one a day: {times:?}");
            let mut days: Vec<_> = times.iter().map(|t| t.date_naive()).collect();
            days.dedup();
            assert_eq!(days.len(), 7, "never twice on one day: {times:?}");
            for t in &times {
                assert_eq!(t.format("%H:%M:%S").to_string(), "07:00:00", "{t}");
            }
            // 07:00 local is 06:00 UTC in winter and 05:00 UTC in summer.
            let hour = |t: &chrono::DateTime<chrono_tz::Tz>| {
                t.with_timezone(&chrono::Utc).format("%H").to_string()
            };
            assert_eq!(hour(&times[0]), format!("{:02}", 7 - first_offset));
            assert_eq!(hour(&times[6]), format!("{:02}", 7 - last_offset));
        }
    }

    #[test]
    fn the_last_fire_is_the_latest_time_at_or_before_now() {
        let berlin = chrono_tz::Europe::Berlin;
        let seven = Schedule::parse("0 0 7 * * *").unwrap();
        let at = |s| seven.last_fire(berlin, utc(s)).unwrap().to_rfc3339();
        assert_eq!(at("2026-03-30T09:00:00Z"), "2026-03-30T05:00:00+00:00");
        assert_eq!(at("2026-03-30T05:00:00Z"), "2026-03-30T05:00:00+00:00");
        assert_eq!(at("2026-03-30T04:59:59Z"), "2026-03-29T05:00:00+00:00");
        assert_eq!(at("2026-03-29T04:00:00Z"), "2026-03-28T06:00:00+00:00");
    }

    #[test]
    fn list_slugs() {
        assert!(Slug::parse("daily").is_ok());
        assert!(Slug::parse("weekly-2").is_ok());
        assert!(Slug::parse("Daily").is_err());
        assert!(Slug::parse("").is_err());
        assert!(Slug::parse("a/b").is_err());
        assert!(Slug::parse("-a").is_err());
    }

    #[test]
    fn article_slugs_may_nest() {
        assert_eq!(Slug::parse_path("/2026/hello/").unwrap().as_str(), "2026/hello");
        assert!(Slug::parse_path("2026//hello").is_err());
        assert!(Slug::parse_path("../etc").is_err());
    }

    #[test]
    fn slugify_folds_text() {
        assert_eq!(Slug::slugify("Hello, World!").unwrap().as_str(), "hello-world");
        assert_eq!(Slug::slugify("Пример").map(|s| s.0), None);
        assert_eq!(Slug::slugify("café 2026").unwrap().as_str(), "caf-2026");
    }

    #[test]
    fn base_url_gets_trailing_slash() {
        let base = BaseUrl::parse("https://example.com/news").unwrap();
        assert_eq!(base.as_str(), "https://example.com/news/");
        assert_eq!(base.join("feed.xml").as_str(), "https://example.com/news/feed.xml");
        assert!(BaseUrl::parse("ftp://example.com/").is_err());
        assert!(BaseUrl::parse("/relative").is_err());
    }

    #[test]
    fn schedules_have_seconds() {
        assert!(Schedule::parse("0 0 7 * * *").is_ok());
        assert!(Schedule::parse("0 7 * * *").is_err());
        assert!(Schedule::parse("0 0 25 * * *").is_err());
    }
}
