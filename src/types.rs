//! Parse-don't-validate newtypes for values that come from configuration and
//! front matter: list and article slugs, the site's base URL, cron schedules.
//! Once a value has one of these types it is known to be well formed.

use std::fmt;
use std::str::FromStr;

use chrono::offset::LocalResult;
use chrono::{
    DateTime, Duration, NaiveDateTime, Offset as _, SubsecRound as _, TimeZone as _, Utc,
};
use chrono_tz::Tz;
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
///
/// A schedule names times on the wall clock of a time zone. Its fire times
/// are worked out in two steps: cron gives the local times it names (naive
/// times, with no clock changes), then each one is placed on the timeline:
///
/// - a local time that exists once fires then;
/// - a local time the clock skips (02:30 on the night clocks go forward in
///   Europe/Berlin) fires at the first instant after the gap (03:00 local),
///   once: every skipped time collapses into that instant, which fires once
///   even when the schedule also names 03:00, so a daily list gets its
///   edition on that day too;
/// - a local time the clock repeats (02:30 on the night clocks go back)
///   fires once, at its first occurrence, unless the schedule fires every
///   hour (its hour field is `*`): then it fires at both, so "every 15
///   minutes" is every 15 real minutes through the repeated hour (as Vixie
///   cron does).
///
/// [`Schedule::next_fire`] is the earliest of these instants after a time,
/// [`Schedule::last_fire`] the latest at or before it; both work to the
/// second, and each finds the other's answers (`last_fire(next_fire(t)) ==
/// next_fire(t)`).
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

    /// Fires at both occurrences of a repeated local time: the hour field
    /// is `*`.
    fn every_hour(&self) -> bool {
        use cron::TimeUnitSpec as _;
        self.schedule.hours().is_all()
    }

    /// The local times the schedule names after `local` (exclusive),
    /// ascending. cron runs on `Utc` as a stand-in for a clock that never
    /// changes.
    fn local_after(&self, local: NaiveDateTime) -> impl Iterator<Item = NaiveDateTime> + '_ {
        self.schedule.after(&Utc.from_utc_datetime(&local)).map(|t| t.naive_utc())
    }

    /// The local times the schedule names before `local` (exclusive),
    /// descending.
    fn local_before(&self, local: NaiveDateTime) -> impl Iterator<Item = NaiveDateTime> + '_ {
        self.schedule.after(&Utc.from_utc_datetime(&local)).rev().map(|t| t.naive_utc())
    }

    /// The instants the local time `local` fires at in `tz` (see the rule
    /// on [`Schedule`]): one, or two for a repeated time of a schedule that
    /// fires every hour.
    fn place(&self, tz: Tz, local: NaiveDateTime) -> [Option<DateTime<Utc>>; 2] {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => [Some(t.to_utc()), None],
            LocalResult::Ambiguous(first, second) => {
                [Some(first.to_utc()), self.every_hour().then(|| second.to_utc())]
            }
            LocalResult::None => [after_gap(tz, local), None],
        }
    }

    /// The next time after `after` that this schedule fires on the wall
    /// clock of `tz` (see the rule on [`Schedule`]).
    pub fn next_fire(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = after.trunc_subsecs(0);
        let local = after.with_timezone(&tz).naive_local();
        // The placements of later local times grow with them, and the
        // first one past `after` is the next fire, with one exception
        // below. Placements of later local times can only be at or before
        // `after` while `after` is in a repeated hour's second pass, so
        // this looks at most that hour's times before finding one.
        let mut next = self
            .local_after(local)
            .find_map(|l| self.place(tz, l).into_iter().flatten().filter(|t| *t > after).min());
        // In the first pass of a repeated hour, a schedule that fires
        // every hour also fires in the second pass, for local times up to
        // `local`: the first of them is the first it names from the start
        // of the second pass.
        if let LocalResult::Ambiguous(first, second) = tz.from_local_datetime(&local) {
            if self.every_hour() && first.to_utc() == after {
                let change = change_between(tz, after, second.to_utc());
                let restart = change.with_timezone(&tz).naive_local();
                let again = self
                    .local_after(restart - Duration::seconds(1))
                    .next()
                    .filter(|l| *l <= local)
                    .and_then(|l| tz.from_local_datetime(&l).latest())
                    .map(|t| t.to_utc());
                next = next.into_iter().chain(again).min();
            }
        }
        next
    }

    /// The last time at or before `at` that this schedule fired on the
    /// wall clock of `tz` (see the rule on [`Schedule`]).
    pub fn last_fire(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = at.trunc_subsecs(0);
        let local = at.with_timezone(&tz).naive_local();
        // The latest local time named at or before `local` fires at or
        // before `at` (its first occurrence, or the end of a gap, does).
        let mut last = self
            .local_before(local + Duration::seconds(1))
            .find_map(|l| self.place(tz, l).into_iter().flatten().filter(|t| *t <= at).max());
        // In the second pass of a repeated hour, the local times after
        // `local` in that hour fired in the first pass: the latest of them
        // is the last the schedule names before the hour repeated.
        if let LocalResult::Ambiguous(first, second) = tz.from_local_datetime(&local) {
            if second.to_utc() == at {
                let change = change_between(tz, first.to_utc(), at);
                let before = (change - Duration::seconds(1)).with_timezone(&tz).naive_local();
                let earlier = self
                    .local_before(before + Duration::seconds(1))
                    .next()
                    .filter(|l| *l > local)
                    .and_then(|l| tz.from_local_datetime(&l).earliest())
                    .map(|t| t.to_utc());
                last = last.into_iter().chain(earlier).max();
            }
        }
        last
    }
}

/// The first instant after the gap that skips the local time `local` in
/// `tz`: the first local time after it that exists. Gaps last minutes to a
/// day (Pacific/Apia skipped 30 December 2011), so this looks two days
/// ahead at most, a minute at a time, then to the second.
fn after_gap(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let exists = |t: NaiveDateTime| tz.from_local_datetime(&t).earliest();
    let minute = Duration::minutes(1);
    let mut skipped = local;
    for _ in 0..2 * 24 * 60 {
        let candidate = skipped + minute;
        if exists(candidate).is_some() {
            // The gap ends after `skipped` and at or before `candidate`.
            let (mut lo, mut hi) = (skipped, candidate);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + Duration::seconds((hi - lo).num_seconds() / 2);
                if exists(mid).is_some() {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            return exists(hi).map(|t| t.to_utc());
        }
        skipped = candidate;
    }
    None
}

/// The instant in `(from, to]` at which the UTC offset of `tz` changes,
/// when it changes once in between.
fn change_between(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    let before = offset(from);
    let (mut lo, mut hi) = (from, to);
    while hi - lo > Duration::seconds(1) {
        let mid = lo + Duration::seconds((hi - lo).num_seconds() / 2);
        if offset(mid) == before {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
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

    /// Each fire time of `schedule` in `tz` from `from` until `to`, as
    /// local time and UTC offset ("2026-03-29 03:00 +02:00").
    fn local_fires(schedule: &str, tz: chrono_tz::Tz, from: &str, to: &str) -> Vec<String> {
        fires(&Schedule::parse(schedule).unwrap(), tz, from, to)
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M %:z").to_string())
            .collect()
    }

    #[test]
    fn a_local_time_the_clock_skips_fires_at_the_end_of_the_gap() {
        use chrono_tz::{America::New_York, Europe::Berlin};
        // Started on the evening before: the edition of 29 March still comes.
        assert_eq!(
            local_fires("0 30 2 * * *", Berlin, "2026-03-28T18:00:00Z", "2026-03-31T00:00:00Z"),
            ["2026-03-29 03:00 +02:00", "2026-03-30 02:30 +02:00"]
        );
        assert_eq!(
            local_fires("0 30 2 * * *", New_York, "2026-03-07T23:00:00Z", "2026-03-10T00:00:00Z"),
            ["2026-03-08 03:00 -04:00", "2026-03-09 02:30 -04:00"]
        );
        // Several skipped times collapse into one, also with 03:00 itself.
        assert_eq!(
            local_fires("0 0,30 2,3 * * *", Berlin, "2026-03-28T23:00:00Z", "2026-03-29T03:00:00Z"),
            ["2026-03-29 03:00 +02:00", "2026-03-29 03:30 +02:00"]
        );
        // Every 15 minutes: every 15 real minutes, 03:00 once.
        assert_eq!(
            local_fires("0 */15 * * * *", Berlin, "2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"),
            ["2026-03-29 01:45 +01:00", "2026-03-29 03:00 +02:00", "2026-03-29 03:15 +02:00",]
        );
    }

    #[test]
    fn a_local_time_the_clock_repeats_fires_once_unless_the_schedule_fires_every_hour() {
        use chrono_tz::Europe::Berlin;
        assert_eq!(
            local_fires("0 30 2 * * *", Berlin, "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
            ["2026-10-25 02:30 +02:00", "2026-10-26 02:30 +01:00"]
        );
        // Hour field `*`: both occurrences, every 15 real minutes.
        assert_eq!(
            local_fires("0 */15 * * * *", Berlin, "2026-10-24T23:50:00Z", "2026-10-25T02:10:00Z"),
            [
                "2026-10-25 02:00 +02:00",
                "2026-10-25 02:15 +02:00",
                "2026-10-25 02:30 +02:00",
                "2026-10-25 02:45 +02:00",
                "2026-10-25 02:00 +01:00",
                "2026-10-25 02:15 +01:00",
                "2026-10-25 02:30 +01:00",
                "2026-10-25 02:45 +01:00",
                "2026-10-25 03:00 +01:00",
            ]
        );
        // The last fire agrees: in the second 02:15 the last was its own.
        let quarter = Schedule::parse("0 */15 * * * *").unwrap();
        let last = quarter.last_fire(Berlin, utc("2026-10-25T01:20:00Z")).unwrap();
        assert_eq!(last.to_rfc3339(), "2026-10-25T01:15:00+00:00");
        let daily = Schedule::parse("0 30 2 * * *").unwrap();
        let last = daily.last_fire(Berlin, utc("2026-10-25T01:40:00Z")).unwrap();
        assert_eq!(last.to_rfc3339(), "2026-10-25T00:30:00+00:00");
    }

    #[test]
    fn a_day_the_clock_skips_whole_gets_one_fire_after_it() {
        // Samoa went from 29 December 2011 to 31 December at midnight.
        let apia = chrono_tz::Pacific::Apia;
        assert_eq!(
            local_fires("0 0 7 * * *", apia, "2011-12-28T00:00:00Z", "2011-12-31T12:00:00Z"),
            [
                "2011-12-28 07:00 -10:00",
                "2011-12-29 07:00 -10:00",
                "2011-12-31 00:00 +14:00",
                "2011-12-31 07:00 +14:00"
            ]
        );
    }

    /// The fire times of `schedule` in `tz` between two instants, worked
    /// out minute by minute on the timeline: a minute whose local time the
    /// schedule names (the first such minute only, unless the hour field
    /// is `*`), and the first minute after a gap that skipped a named time.
    fn brute_force(
        schedule: &Schedule,
        tz: chrono_tz::Tz,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Vec<chrono::DateTime<chrono::Utc>> {
        use chrono::TimeZone as _;
        use cron::TimeUnitSpec as _;
        let minute = chrono::Duration::minutes(1);
        let named = |local: chrono::NaiveDateTime| {
            schedule.schedule.includes(chrono::Utc.from_utc_datetime(&local))
        };
        let hourly = schedule.schedule.hours().is_all();
        let mut out = Vec::new();
        let mut x = from;
        while x <= to {
            let local = x.with_timezone(&tz).naive_local();
            let before = (x - minute).with_timezone(&tz).naive_local();
            let first = tz.from_local_datetime(&local).earliest() == Some(x.with_timezone(&tz));
            let skipped = local - before > minute
                && std::iter::successors(Some(before + minute), |t| Some(*t + minute))
                    .take_while(|t| *t < local)
                    .any(named);
            if (named(local) && (hourly || first)) || skipped {
                out.push(x);
            }
            x += minute;
        }
        out
    }

    #[test]
    fn next_and_last_fire_agree_with_the_timeline_around_clock_changes() {
        use chrono_tz::{America, Asia, Australia, Europe, Pacific};
        let cases = [
            (Europe::Berlin, "2026-03-29T01:00:00Z"),
            (Europe::Berlin, "2026-10-25T01:00:00Z"),
            (America::New_York, "2026-03-08T07:00:00Z"),
            (America::New_York, "2026-11-01T06:00:00Z"),
            (Australia::Sydney, "2026-04-04T16:00:00Z"),
            (Australia::Sydney, "2026-10-03T16:00:00Z"),
            (Australia::Lord_Howe, "2026-04-04T15:00:00Z"),
            (Australia::Lord_Howe, "2026-10-03T15:30:00Z"),
            (Asia::Kolkata, "2026-06-01T00:00:00Z"),
            (Pacific::Apia, "2011-12-30T10:00:00Z"),
        ];
        let schedules =
            ["0 0 7 * * *", "0 30 2 * * *", "0 */15 * * * *", "0 0,30 1,2,3 * * *", "0 45 * * * *"];
        for (tz, change) in cases {
            let change = utc(change);
            let (from, to) =
                (change - chrono::Duration::hours(30), change + chrono::Duration::hours(30));
            for text in schedules {
                let schedule = Schedule::parse(text).unwrap();
                let expected = brute_force(&schedule, tz, from, to);
                let mut at = from + chrono::Duration::hours(6);
                while at < to - chrono::Duration::hours(6) {
                    for t in
                        [at - chrono::Duration::seconds(1), at, at + chrono::Duration::seconds(30)]
                    {
                        let next = expected.iter().find(|x| **x > t).copied();
                        let last = expected.iter().rev().find(|x| **x <= t).copied();
                        if next.is_some_and(|n| n < to - chrono::Duration::hours(1)) {
                            assert_eq!(
                                schedule.next_fire(tz, t),
                                next,
                                "{text} in {tz}: next after {t}"
                            );
                        }
                        if last.is_some_and(|l| l > from + chrono::Duration::hours(1)) {
                            assert_eq!(
                                schedule.last_fire(tz, t),
                                last,
                                "{text} in {tz}: last at {t}"
                            );
                        }
                        if let Some(n) = schedule.next_fire(tz, t) {
                            assert_eq!(schedule.last_fire(tz, n), Some(n), "{text} in {tz}");
                        }
                    }
                    at += chrono::Duration::minutes(3);
                }
            }
        }
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
