//! Configuration: `herald.toml` plus `HERALD_<SECTION>_<KEY>` environment
//! overrides, parsed once into typed values. Every problem found is reported
//! with its place (file and line, or the environment variable), all at once,
//! so `herald check` can list them together.
//!
//! Secrets never come from the file: the SMTP password is read from
//! `HERALD_MAIL_SMTP_PASSWORD` and the signing secret from `HERALD_SECRET`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::email::EmailAddress;
use crate::types::{BaseUrl, Schedule, Slug};

mod env;
mod exposure;
mod problems;
#[cfg(test)]
mod tests;

pub use env::{ENV_ADMIN_TOKEN, ENV_SECRET, ENV_SMTP_PASSWORD};
use problems::Locator;
pub use problems::{ConfigError, Place, Problem};

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
}

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

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// A sqlx connection URL; relative SQLite paths already resolved.
    pub url: String,
}

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

/// How upstream feeds are fetched.
#[derive(Debug, Clone)]
pub struct Collect {
    /// Sources fetched at once.
    pub concurrency: usize,
    pub connect_timeout_secs: u64,
    pub timeout_secs: u64,
    /// Largest body accepted, counted after decompression.
    pub max_body_bytes: u64,
    pub max_redirects: usize,
    /// Failures in a row before a failing source is logged as an error.
    pub error_after: i64,
    /// When `herald daemon` collects (then publishes when anything changed).
    pub schedule: Schedule,
}

/// What a list's edition does when its time passed while no daemon ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Compose and send it now, once, if it is less than `max_lateness` late.
    OnceIfLate,
    /// Wait for the next scheduled time.
    Skip,
    /// Compose and send it now however late.
    Always,
}

/// `herald daemon`.
#[derive(Debug, Clone)]
pub struct Daemon {
    pub catch_up: CatchUp,
    /// How late a missed edition may still go out (`catch_up = "once_if_late"`).
    pub max_lateness: chrono::Duration,
    /// On SIGTERM, how long running jobs get to finish.
    pub grace_secs: u64,
    /// How long the daemon's lease on the store lasts without a heartbeat.
    pub lease_secs: u64,
}

#[derive(Debug, Clone)]
pub struct Feeds {
    pub output_dir: PathBuf,
    pub items: usize,
    /// Also write feeds per tag (public/tags/TAG/…).
    pub per_tag: bool,
    /// A WebSub hub the feeds advertise and publish pings.
    pub hub: Option<Url>,
}

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
}

#[derive(Debug, Clone)]
pub struct Mail {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub transport: Transport,
    pub outbox_dir: PathBuf,
    pub smtp_url: Url,
    pub concurrency: usize,
    pub rate_per_second: f64,
    /// Reconnect after this many messages on one connection (0: never).
    pub messages_per_connection: usize,
    /// Hard bounces (5.1.x, 5.2.1) after which an address is suppressed.
    pub suppress_after: u32,
    pub max_attempts: u32,
    pub retry_base_secs: u64,
    pub timeout_secs: u64,
    pub unsubscribe_mailto: Option<EmailAddress>,
    /// DKIM signing, when `dkim_selector` and `dkim_key_file` are set.
    pub dkim: Option<Dkim>,
    /// `[[mail.relays]]`: several SMTP servers sharing the sending. Empty
    /// means one relay from `smtp_url`, `concurrency` and `rate_per_second`.
    pub relays: Vec<Relay>,
}

/// One SMTP server of `[[mail.relays]]`.
#[derive(Debug, Clone)]
pub struct Relay {
    pub name: Slug,
    pub url: Url,
    pub concurrency: usize,
    /// Messages per second at most (0: no limit).
    pub rate_per_second: f64,
    /// Messages per UTC day at most (0: no limit).
    pub daily_cap: u64,
}

impl Relay {
    /// The environment variable holding this relay's SMTP password.
    pub fn password_var(&self) -> String {
        format!(
            "HERALD_MAIL_RELAY_{}_PASSWORD",
            self.name.as_str().to_ascii_uppercase().replace('-', "_")
        )
    }
}

/// DKIM signing settings (RFC 6376).
#[derive(Debug, Clone)]
pub struct Dkim {
    pub selector: String,
    /// The signing domain (`d=`): `dkim_domain`, else the From address's domain.
    pub domain: String,
    /// The private key: PKCS#1 PEM for RSA, base64 of the 32-byte seed for Ed25519.
    pub key_file: PathBuf,
    pub algorithm: DkimAlgorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Outbox,
    Smtp,
}

#[derive(Debug, Clone)]
pub struct Web {
    pub listen: SocketAddr,
    /// Cache-Control max-age for served files, in seconds.
    pub cache_max_age: u64,
    /// How long a confirmation link works, in days.
    pub confirm_expiry_days: u64,
    /// Sign-up form posts allowed per client address per minute.
    pub subscribe_per_ip_per_minute: u32,
    /// Sign-up form posts allowed per email address per hour.
    pub subscribe_per_address_per_hour: u32,
    /// At most one confirmation mail per address in this many minutes.
    pub confirm_mail_interval_minutes: u64,
    /// Take the client's address from the last X-Forwarded-For entry (set it
    /// only behind a reverse proxy that writes that header).
    pub behind_proxy: bool,
    /// How long a client has to send a request's headers, from its first
    /// byte (or from connecting, for a connection's first request).
    pub header_timeout: std::time::Duration,
    /// How long a kept-alive connection may sit with no request.
    pub idle_timeout: std::time::Duration,
    /// Connections served at once; more wait until one closes.
    pub max_connections: usize,
    /// Memory the file cache may hold (files and their compressed copies).
    pub cache_bytes: u64,
    /// Where `/healthz` and `/metrics` are served instead of the public
    /// listener.
    pub admin_listen: Option<SocketAddr>,
}

impl Config {
    pub fn list(&self, slug: &str) -> Option<&List> {
        self.lists.iter().find(|l| l.slug.as_str() == slug)
    }
}

// ---------------------------------------------------------------------------
// The file as written

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    site: RawSite,
    store: RawStore,
    sources: Vec<RawSource>,
    collect: RawCollect,
    feeds: RawFeeds,
    lists: Vec<RawList>,
    mail: RawMail,
    web: RawWeb,
    daemon: RawDaemon,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawSite {
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

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    url: String,
}

impl Default for RawStore {
    fn default() -> Self {
        Self { url: "sqlite://herald.db".into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
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

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawCollect {
    concurrency: i64,
    connect_timeout_secs: i64,
    timeout_secs: i64,
    max_body_bytes: i64,
    max_redirects: i64,
    error_after: i64,
    schedule: String,
}

impl Default for RawCollect {
    fn default() -> Self {
        Self {
            concurrency: 8,
            connect_timeout_secs: 10,
            timeout_secs: 30,
            max_body_bytes: 10 * 1024 * 1024,
            max_redirects: 5,
            error_after: 3,
            schedule: "0 */15 * * * *".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawDaemon {
    catch_up: String,
    max_lateness_minutes: i64,
    grace_secs: i64,
    lease_secs: i64,
}

impl Default for RawDaemon {
    fn default() -> Self {
        Self {
            catch_up: "once_if_late".into(),
            max_lateness_minutes: 360,
            grace_secs: 30,
            lease_secs: 30,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawFeeds {
    output_dir: String,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
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
fn default_true() -> bool {
    true
}

fn default_max_articles() -> i64 {
    50
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawMail {
    from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    transport: String,
    outbox_dir: String,
    smtp_url: String,
    concurrency: i64,
    rate_per_second: f64,
    messages_per_connection: i64,
    suppress_after: i64,
    max_attempts: i64,
    retry_base_secs: i64,
    timeout_secs: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsubscribe_mailto: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dkim_selector: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dkim_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dkim_domain: Option<String>,
    dkim_algorithm: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    relays: Vec<RawRelay>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    name: String,
    url: String,
    #[serde(default = "default_relay_concurrency")]
    concurrency: i64,
    #[serde(default)]
    rate_per_second: f64,
    #[serde(default)]
    daily_cap: i64,
}

fn default_relay_concurrency() -> i64 {
    4
}

impl Default for RawMail {
    fn default() -> Self {
        Self {
            from: "herald <herald@localhost.localdomain>".into(),
            reply_to: None,
            transport: "outbox".into(),
            outbox_dir: "outbox".into(),
            smtp_url: "smtp://127.0.0.1:25".into(),
            concurrency: 8,
            rate_per_second: 0.0,
            messages_per_connection: 0,
            suppress_after: 1,
            max_attempts: 5,
            retry_base_secs: 60,
            timeout_secs: 60,
            unsubscribe_mailto: None,
            dkim_selector: None,
            dkim_key_file: None,
            dkim_domain: None,
            dkim_algorithm: "rsa".into(),
            relays: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawWeb {
    listen: String,
    cache_max_age: i64,
    confirm_expiry_days: i64,
    subscribe_per_ip_per_minute: i64,
    subscribe_per_address_per_hour: i64,
    confirm_mail_interval_minutes: i64,
    behind_proxy: bool,
    header_timeout_secs: i64,
    idle_timeout_secs: i64,
    max_connections: i64,
    cache_bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<String>,
}

impl Default for RawWeb {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            cache_max_age: 300,
            confirm_expiry_days: 7,
            subscribe_per_ip_per_minute: 10,
            subscribe_per_address_per_hour: 5,
            confirm_mail_interval_minutes: 60,
            behind_proxy: false,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 512,
            cache_bytes: 64 * 1024 * 1024,
            admin_listen: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Loading

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
    let locator = Locator { path, text };
    let mut raw: RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::syntax(path, text, &e))?;

    let env::Overrides { set: from_env, mut problems } = env::apply(&mut raw, env);

    let place = |section: &str, index: Option<usize>, key: &str| -> Place {
        if index.is_none() {
            if let Some(o) = from_env.iter().find(|o| o.section == section && o.key == key) {
                return Place::Env { var: o.var.clone() };
            }
        }
        locator.place(section, index, key)
    };
    let mut problem = |place: Place, message: String| problems.push(Problem { place, message });

    let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let root = if root.as_os_str().is_empty() { PathBuf::from(".") } else { root };
    let root = std::path::absolute(&root).unwrap_or(root);
    let resolve = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            root.join(p)
        }
    };

    // [site]
    let base_url = BaseUrl::parse(&raw.site.base_url).unwrap_or_else(|e| {
        problem(place("site", None, "base_url"), format!("site.base_url: {e}"));
        BaseUrl::parse("http://127.0.0.1:8080/").expect("a constant URL parses")
    });
    if raw.site.title.trim().is_empty() {
        problem(
            place("site", None, "title"),
            "site.title is empty: give the publication a name".into(),
        );
    }
    let site = Site {
        title: raw.site.title.trim().to_owned(),
        base_url,
        language: raw.site.language.clone(),
        author: raw.site.author.clone().filter(|a| !a.trim().is_empty()),
        description: raw.site.description.clone(),
        templates_dir: resolve(&raw.site.templates_dir),
        // Written on several lines or one, shown on one.
        postal_address: raw
            .site
            .postal_address
            .as_deref()
            .map(|a| {
                a.lines()
                    .map(crate::collect::sanitize::clean_line)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|a| !a.is_empty()),
    };

    // [store]
    let store = StoreConfig {
        url: resolve_store_url(&raw.store.url, &root).unwrap_or_else(|message| {
            problem(place("store", None, "url"), message);
            String::new()
        }),
    };

    // [[sources]]
    let mut sources = Vec::new();
    for (i, s) in raw.sources.iter().enumerate() {
        let name = match Slug::parse(&s.name) {
            Ok(name) => name,
            Err(e) => {
                problem(place("sources", Some(i), "name"), format!("source name: {e}"));
                continue;
            }
        };
        if sources.iter().any(|o: &Source| o.name == name) {
            problem(place("sources", Some(i), "name"), format!("two sources are named `{name}`"));
            continue;
        }
        let kind = match s.kind.as_str() {
            "dir" => match &s.path {
                Some(p) => SourceKind::Dir { path: resolve(p) },
                None => {
                    problem(
                        place("sources", Some(i), "kind"),
                        format!("source `{name}` has kind = \"dir\" but no path = \"FOLDER\""),
                    );
                    continue;
                }
            },
            "feed" => match s.url.as_deref().map(Url::parse) {
                Some(Ok(url)) if url.scheme() == "http" || url.scheme() == "https" => {
                    SourceKind::Feed { url, allow_private: s.allow_private }
                }
                Some(_) => {
                    problem(
                        place("sources", Some(i), "url"),
                        format!(
                            "source `{name}`: url must be an http:// or https:// URL of a feed"
                        ),
                    );
                    continue;
                }
                None => {
                    problem(
                        place("sources", Some(i), "kind"),
                        format!("source `{name}` has kind = \"feed\" but no url = \"https://…\""),
                    );
                    continue;
                }
            },
            other => {
                problem(
                    place("sources", Some(i), "kind"),
                    format!(
                        "source `{name}`: unknown kind `{other}` (expected \"dir\" or \"feed\")"
                    ),
                );
                continue;
            }
        };
        if matches!(kind, SourceKind::Dir { .. }) && (s.url.is_some() || s.allow_private) {
            problem(
                place("sources", Some(i), "url"),
                format!("source `{name}`: url and allow_private apply to kind = \"feed\" only"),
            );
        }
        let title_pattern = match s.title_pattern.as_deref().map(regex::Regex::new).transpose() {
            Ok(p) => p,
            Err(e) => {
                problem(
                    place("sources", Some(i), "title_pattern"),
                    format!("source `{name}`: title_pattern: {e}"),
                );
                continue;
            }
        };
        let Ok(backfill) = usize::try_from(s.backfill) else {
            problem(
                place("sources", Some(i), "backfill"),
                format!("source `{name}`: backfill must be 0 or more"),
            );
            continue;
        };
        sources.push(Source {
            name,
            kind,
            tags: s.tags.clone(),
            include_tags: s.include_tags.clone(),
            exclude_tags: s.exclude_tags.clone(),
            title_pattern,
            backfill,
        });
    }

    // [collect]
    let c = &raw.collect;
    let mut bounded = |key: &str, value: i64, min: i64, max: i64| -> i64 {
        if !(min..=max).contains(&value) {
            problem(
                place("collect", None, key),
                format!("collect.{key} must be between {min} and {max}, not {value}"),
            );
            min.max(1)
        } else {
            value
        }
    };
    let collect = Collect {
        concurrency: bounded("concurrency", c.concurrency, 1, 256) as usize,
        connect_timeout_secs: bounded("connect_timeout_secs", c.connect_timeout_secs, 1, 600)
            as u64,
        timeout_secs: bounded("timeout_secs", c.timeout_secs, 1, 3600) as u64,
        max_body_bytes: bounded("max_body_bytes", c.max_body_bytes, 1024, 1 << 32) as u64,
        max_redirects: bounded("max_redirects", c.max_redirects, 0, 20) as usize,
        error_after: bounded("error_after", c.error_after, 1, 1000),
        schedule: Schedule::parse(&c.schedule).unwrap_or_else(|e| {
            problem(place("collect", None, "schedule"), format!("collect.schedule: {e}"));
            Schedule::parse("0 */15 * * * *").expect("a constant schedule parses")
        }),
    };

    // [daemon]
    let d = &raw.daemon;
    let catch_up = match d.catch_up.as_str() {
        "once_if_late" => CatchUp::OnceIfLate,
        "skip" => CatchUp::Skip,
        "always" => CatchUp::Always,
        other => {
            problem(
                place("daemon", None, "catch_up"),
                format!("daemon.catch_up is `{other}`; expected \"once_if_late\", \"skip\" or \"always\""),
            );
            CatchUp::OnceIfLate
        }
    };
    let mut at_least = |key: &str, value: i64, min: i64| -> i64 {
        if value < min {
            problem(
                place("daemon", None, key),
                format!("daemon.{key} must be {min} or more, not {value}"),
            );
            min
        } else {
            value
        }
    };
    let daemon = Daemon {
        catch_up,
        max_lateness: chrono::Duration::minutes(at_least(
            "max_lateness_minutes",
            d.max_lateness_minutes,
            0,
        )),
        grace_secs: at_least("grace_secs", d.grace_secs, 0) as u64,
        lease_secs: at_least("lease_secs", d.lease_secs, 2) as u64,
    };

    // [feeds]
    let items = usize::try_from(raw.feeds.items).ok().filter(|n| (1..=10_000).contains(n));
    if items.is_none() {
        problem(
            place("feeds", None, "items"),
            format!("feeds.items must be between 1 and 10000, not {}", raw.feeds.items),
        );
    }
    let hub = raw.feeds.hub.as_deref().filter(|h| !h.trim().is_empty()).and_then(|h| {
        Url::parse(h).ok().filter(|u| u.scheme() == "http" || u.scheme() == "https").or_else(|| {
            problem(place("feeds", None, "hub"), format!("feeds.hub `{h}` is not an http(s) URL"));
            None
        })
    });
    let feeds = Feeds {
        output_dir: resolve(&raw.feeds.output_dir),
        items: items.unwrap_or(50),
        per_tag: raw.feeds.per_tag,
        hub,
    };

    // [[lists]]
    let mut lists: Vec<List> = Vec::new();
    for (i, l) in raw.lists.iter().enumerate() {
        let slug = match Slug::parse(&l.slug) {
            Ok(slug) => slug,
            Err(e) => {
                problem(place("lists", Some(i), "slug"), format!("list slug: {e}"));
                continue;
            }
        };
        if lists.iter().any(|o| o.slug == slug) {
            problem(place("lists", Some(i), "slug"), format!("two lists have the slug `{slug}`"));
            continue;
        }
        let schedule = Schedule::parse(&l.schedule).map_err(|e| {
            problem(place("lists", Some(i), "schedule"), format!("list `{slug}`: {e}"))
        });
        let timezone = l.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            problem(
                place("lists", Some(i), "timezone"),
                format!("list `{slug}`: `{}` is not an IANA time zone name like \"Europe/Paris\" or \"UTC\"", l.timezone),
            )
        });
        if let Err(e) = crate::templates::check_string(&l.subject) {
            problem(
                place("lists", Some(i), "subject"),
                format!("list `{slug}`: subject template: {e}"),
            );
        }
        let min_articles = usize::try_from(l.min_articles).map_err(|_| {
            problem(
                place("lists", Some(i), "min_articles"),
                format!("list `{slug}`: min_articles must be 0 or more"),
            )
        });
        let max_articles =
            usize::try_from(l.max_articles).ok().filter(|n| *n >= 1).ok_or_else(|| {
                problem(
                    place("lists", Some(i), "max_articles"),
                    format!("list `{slug}`: max_articles must be 1 or more"),
                )
            });
        let (Ok(schedule), Ok(timezone), Ok(min_articles), Ok(max_articles)) =
            (schedule, timezone, min_articles, max_articles)
        else {
            continue;
        };
        let subscribers =
            resolve(l.subscribers.as_deref().unwrap_or(&format!("subscribers/{slug}.csv")));
        lists.push(List {
            name: if l.name.trim().is_empty() {
                slug.to_string()
            } else {
                l.name.trim().to_owned()
            },
            slug,
            description: l.description.clone(),
            schedule,
            timezone,
            subject: l.subject.clone(),
            min_articles,
            max_articles,
            subscribers,
            public: l.public,
        });
    }

    // [mail]
    let m = &raw.mail;
    let from = parse_mailbox(&m.from).unwrap_or_else(|e| {
        problem(place("mail", None, "from"), format!("mail.from: {e}"));
        "herald <herald@localhost.localdomain>".parse().expect("a constant mailbox parses")
    });
    let reply_to = m.reply_to.as_deref().filter(|r| !r.trim().is_empty()).and_then(|r| {
        parse_mailbox(r)
            .map_err(|e| problem(place("mail", None, "reply_to"), format!("mail.reply_to: {e}")))
            .ok()
    });
    let transport = match m.transport.as_str() {
        "outbox" => Transport::Outbox,
        "smtp" => Transport::Smtp,
        other => {
            problem(
                place("mail", None, "transport"),
                format!("mail.transport is `{other}`; expected \"outbox\" or \"smtp\""),
            );
            Transport::Outbox
        }
    };
    let smtp_url = parse_smtp_url(&m.smtp_url).unwrap_or_else(|e| {
        problem(place("mail", None, "smtp_url"), e);
        Url::parse("smtp://127.0.0.1:25").expect("a constant URL parses")
    });
    let mut positive = |key: &str, value: i64, max: i64| -> i64 {
        if !(1..=max).contains(&value) {
            problem(
                place("mail", None, key),
                format!("mail.{key} must be between 1 and {max}, not {value}"),
            );
            1
        } else {
            value
        }
    };
    let concurrency = positive("concurrency", m.concurrency, 256) as usize;
    let max_attempts = positive("max_attempts", m.max_attempts, 100) as u32;
    let suppress_after = positive("suppress_after", m.suppress_after, 100) as u32;
    let retry_base_secs = positive("retry_base_secs", m.retry_base_secs, 86_400) as u64;
    let timeout_secs = positive("timeout_secs", m.timeout_secs, 3_600) as u64;
    if m.messages_per_connection < 0 {
        problem(
            place("mail", None, "messages_per_connection"),
            "mail.messages_per_connection must be 0 (no limit) or more".into(),
        );
    }
    if !(m.rate_per_second >= 0.0 && m.rate_per_second.is_finite()) {
        problem(
            place("mail", None, "rate_per_second"),
            "mail.rate_per_second must be 0 (no limit) or more".into(),
        );
    }
    let unsubscribe_mailto =
        m.unsubscribe_mailto.as_deref().filter(|a| !a.trim().is_empty()).and_then(|a| {
            EmailAddress::parse(a)
                .map_err(|e| {
                    problem(
                        place("mail", None, "unsubscribe_mailto"),
                        format!("mail.unsubscribe_mailto: {e}"),
                    )
                })
                .ok()
        });
    let nonempty = |v: &Option<String>| {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
    };
    let dkim = match (nonempty(&m.dkim_selector), nonempty(&m.dkim_key_file)) {
        (None, None) => None,
        (Some(selector), Some(key_file)) => {
            let algorithm = match m.dkim_algorithm.as_str() {
                "rsa" => Some(DkimAlgorithm::Rsa),
                "ed25519" => Some(DkimAlgorithm::Ed25519),
                other => {
                    problem(
                        place("mail", None, "dkim_algorithm"),
                        format!(
                            "mail.dkim_algorithm is `{other}`; expected \"rsa\" or \"ed25519\""
                        ),
                    );
                    None
                }
            };
            if !selector
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            {
                problem(
                    place("mail", None, "dkim_selector"),
                    format!(
                        "mail.dkim_selector `{selector}` must be a DNS label like \"herald2026\""
                    ),
                );
            }
            algorithm.map(|algorithm| Dkim {
                selector,
                domain: nonempty(&m.dkim_domain).unwrap_or_else(|| from.email.domain().to_owned()),
                key_file: resolve(&key_file),
                algorithm,
            })
        }
        (Some(_), None) => {
            problem(place("mail", None, "dkim_selector"), "mail.dkim_selector is set but mail.dkim_key_file is not: set both to sign with DKIM".into());
            None
        }
        (None, Some(_)) => {
            problem(place("mail", None, "dkim_key_file"), "mail.dkim_key_file is set but mail.dkim_selector is not: set both to sign with DKIM".into());
            None
        }
    };
    let mut relays: Vec<Relay> = Vec::new();
    for (i, r) in m.relays.iter().enumerate() {
        let at = |key: &str| locator.place("mail.relays", Some(i), key);
        let name = match Slug::parse(&r.name) {
            Ok(name) => name,
            Err(e) => {
                problem(at("name"), format!("relay name: {e}"));
                continue;
            }
        };
        if relays.iter().any(|o| o.name == name) {
            problem(at("name"), format!("two relays are named `{name}`"));
            continue;
        }
        let url = match parse_smtp_url(&r.url) {
            Ok(url) => url,
            Err(e) => {
                problem(
                    at("url"),
                    format!("relay `{name}`: {}", e.replace("mail.smtp_url", "url")),
                );
                continue;
            }
        };
        if !(1..=256).contains(&r.concurrency) {
            problem(
                at("concurrency"),
                format!("relay `{name}`: concurrency must be between 1 and 256"),
            );
            continue;
        }
        if !(r.rate_per_second >= 0.0 && r.rate_per_second.is_finite()) || r.daily_cap < 0 {
            problem(
                at("rate_per_second"),
                format!(
                    "relay `{name}`: rate_per_second and daily_cap must be 0 (no limit) or more"
                ),
            );
            continue;
        }
        relays.push(Relay {
            name,
            url,
            concurrency: r.concurrency as usize,
            rate_per_second: r.rate_per_second,
            daily_cap: r.daily_cap as u64,
        });
    }
    let mail = Mail {
        relays,
        dkim,
        from,
        reply_to,
        transport,
        outbox_dir: resolve(&m.outbox_dir),
        smtp_url,
        concurrency,
        rate_per_second: m.rate_per_second.max(0.0),
        messages_per_connection: usize::try_from(m.messages_per_connection).unwrap_or(0),
        suppress_after,
        max_attempts,
        retry_base_secs,
        timeout_secs,
        unsubscribe_mailto,
    };

    // [web]
    let listen = raw.web.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        problem(
            place("web", None, "listen"),
            format!(
                "web.listen is `{}`; expected an address and port like \"127.0.0.1:8080\"",
                raw.web.listen
            ),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let admin_listen = raw.web.admin_listen.as_deref().filter(|a| !a.trim().is_empty()).and_then(
        |text| match text.trim().parse::<SocketAddr>() {
            Ok(addr) if addr == listen => {
                problem(
                    place("web", None, "admin_listen"),
                    format!("web.admin_listen is the same address as web.listen ({addr}); give health and metrics their own port, like \"127.0.0.1:9090\""),
                );
                None
            }
            Ok(addr) => Some(addr),
            Err(_) => {
                problem(
                    place("web", None, "admin_listen"),
                    format!("web.admin_listen is `{text}`; expected an address and port like \"127.0.0.1:9090\""),
                );
                None
            }
        },
    );

    let w = &raw.web;
    let mut non_negative = |key: &str, value: i64, least: i64| -> u64 {
        if value < least {
            problems.push(Problem {
                place: place("web", None, key),
                message: format!("web.{key} must be {least} or more (it is {value})"),
            });
        }
        u64::try_from(value).unwrap_or(0)
    };
    let web = Web {
        listen,
        cache_max_age: non_negative("cache_max_age", w.cache_max_age, 0),
        confirm_expiry_days: non_negative("confirm_expiry_days", w.confirm_expiry_days, 1),
        subscribe_per_ip_per_minute: u32::try_from(non_negative(
            "subscribe_per_ip_per_minute",
            w.subscribe_per_ip_per_minute,
            1,
        ))
        .unwrap_or(u32::MAX),
        subscribe_per_address_per_hour: u32::try_from(non_negative(
            "subscribe_per_address_per_hour",
            w.subscribe_per_address_per_hour,
            1,
        ))
        .unwrap_or(u32::MAX),
        confirm_mail_interval_minutes: non_negative(
            "confirm_mail_interval_minutes",
            w.confirm_mail_interval_minutes,
            0,
        ),
        behind_proxy: w.behind_proxy,
        header_timeout: std::time::Duration::from_secs(non_negative(
            "header_timeout_secs",
            w.header_timeout_secs,
            1,
        )),
        idle_timeout: std::time::Duration::from_secs(non_negative(
            "idle_timeout_secs",
            w.idle_timeout_secs,
            1,
        )),
        max_connections: usize::try_from(non_negative("max_connections", w.max_connections, 1))
            .unwrap_or(usize::MAX),
        cache_bytes: non_negative("cache_bytes", w.cache_bytes, 0),
        admin_listen,
    };

    let config = Config {
        path: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
        root,
        site,
        store,
        sources,
        collect,
        feeds,
        lists,
        mail,
        web,
        daemon,
    };
    if let Some(message) = exposure::problem(&config, path, &raw.feeds.output_dir) {
        problems.push(Problem { place: place("feeds", None, "output_dir"), message });
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    Ok(config)
}

fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    let mailbox: Mailbox = text.parse().map_err(|e| {
        format!("`{text}` is not an address like \"Example News <news@example.com>\" ({e})")
    })?;
    EmailAddress::parse(mailbox.email.as_ref()).map_err(|e| e.to_string())?;
    Ok(mailbox)
}

fn parse_smtp_url(text: &str) -> Result<Url, String> {
    // Messages show the URL without any password it carries: they end up in
    // terminals, logs and CI output.
    let shown = without_password(text);
    let url = Url::parse(text).map_err(|e| format!("mail.smtp_url `{shown}` is not a URL: {e}"))?;
    if url.scheme() != "smtp" && url.scheme() != "smtps" {
        return Err(format!(
            "mail.smtp_url must start with smtp:// (STARTTLS when offered) or smtps:// (TLS from the start), not {}://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("mail.smtp_url `{shown}` has no host"));
    }
    if url.password().is_some() {
        return Err(format!(
            "mail.smtp_url must not contain a password: put the user in the URL and the password in {ENV_SMTP_PASSWORD}"
        ));
    }
    Ok(url)
}

/// `text` with the password of a URL's user part (`user:password@`)
/// replaced by `…`; it need not be a valid URL.
fn without_password(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let Some(at) = text[start..].rfind('@').map(|i| start + i) else {
        return text.to_owned();
    };
    match text[start..at].find(':') {
        Some(colon) => format!("{}:…{}", &text[..start + colon], &text[at..]),
        None => text.to_owned(),
    }
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
