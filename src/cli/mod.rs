//! The command line: each command loads what it needs, calls one stage or
//! one store operation, and prints what happened. No business logic here.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::deliver::{self};
use crate::store::Store;
use crate::templates::{self, Templates};

mod articles;
mod bounces;
mod deliveries;
mod site;
mod stages;
mod status;
mod store;
mod subscribers;

pub use articles::ArticlesCommand;
pub use store::StoreCommand;
pub use subscribers::SubscribersCommand;

const ABOUT: &str = "Collect articles, publish RSS, Atom and JSON feeds, and mail a daily digest to subscriber lists.";

const LONG_ABOUT: &str = "\
herald collects articles (Markdown files with front matter), stores them in SQLite, \
publishes them as RSS 2.0, Atom 1.0 and JSON Feed files with a page per article, and \
mails each subscriber list a daily digest rendered from Tera templates, over SMTP or \
into an outbox folder.

Start with `herald init`, then `herald run`. Settings live in herald.toml; every key \
of its [site], [store], [feeds], [mail] and [web] sections can be overridden from the \
environment as HERALD_<SECTION>_<KEY> (e.g. HERALD_MAIL_TRANSPORT=smtp). The SMTP \
password comes only from HERALD_MAIL_SMTP_PASSWORD, the link-signing secret from \
HERALD_SECRET.";

#[derive(Debug, Parser)]
#[command(name = "herald", version, about = ABOUT, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    /// The configuration file. Relative paths inside it are relative to its folder.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "HERALD_CONFIG",
        default_value = "herald.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,

    /// Print only errors (no warnings).
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log more: -v shows each stage's progress, -vv debug detail. HERALD_LOG
    /// (a tracing filter such as "herald=debug") overrides both.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines as text (the default) or as JSON objects, one a line.
    #[arg(long, global = true, value_enum, default_value = "text", value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Act as if the time were TIME (RFC 3339, e.g. 2026-11-24T07:00:00Z):
    /// decides the edition date and retry times. For replays and tests.
    #[arg(long, global = true, value_name = "TIME", value_parser = parse_time)]
    pub now: Option<DateTime<Utc>>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a ready-to-run site (herald.toml, templates/, content/, subscribers/) into DIR.
    Init {
        /// The folder to write into; created if missing.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
        /// The site's public address (e.g. https://news.example.org/): every link in
        /// feeds and mails is built from it. Written as site.base_url; without it the
        /// example's https://news.example.com/ stays until you edit herald.toml.
        #[arg(long, value_name = "URL", value_parser = parse_base_url)]
        base_url: Option<crate::types::BaseUrl>,
    },
    /// Check the configuration, templates, sources and subscriber files; print every problem with its place.
    Check {
        /// Also look up the sending domain's SPF, DKIM and DMARC records in DNS.
        #[arg(long)]
        dns: bool,
        /// Also check the published feeds against the rules feed validators apply.
        #[arg(long)]
        feeds: bool,
    },
    /// Read every source and store new and changed articles.
    Collect,
    /// Write the feeds (feed.xml, atom.xml, feed.json) and article pages into feeds.output_dir.
    Publish,
    /// Sync subscriber files, then compose today's edition of each list from the articles new since its last edition.
    Compose {
        /// Store nothing: write the digest a list would get now (today's edition, or the one
        /// its new articles would make) to FILE, rendered for a sample reader, to open in a browser.
        #[arg(long, value_name = "FILE.html", conflicts_with = "dry_run")]
        preview: Option<PathBuf>,
        /// Store nothing: say what each list's edition would hold now, or why it gets none.
        #[arg(long)]
        dry_run: bool,
        /// With --preview: the list to preview (default: the first list).
        #[arg(long, value_name = "SLUG", requires = "preview")]
        list: Option<String>,
    },
    /// Send every due message of the editions in progress (to the outbox folder or the SMTP server).
    Deliver {
        /// Send nothing: list who would get which edition now.
        #[arg(long, conflicts_with_all = ["test", "pause", "resume"])]
        dry_run: bool,
        /// Send the list's latest edition to ADDRESS only, outside the ledger (needs --list).
        #[arg(long, value_name = "ADDRESS", requires = "list", conflicts_with_all = ["pause", "resume"])]
        test: Option<String>,
        /// The list for --test.
        #[arg(long, value_name = "SLUG", requires = "test")]
        list: Option<String>,
        /// Stop sending LIST's editions until --resume (kept in the store).
        #[arg(long, value_name = "LIST", conflicts_with = "resume")]
        pause: Option<String>,
        /// Resume sending LIST's editions.
        #[arg(long, value_name = "LIST")]
        resume: Option<String>,
    },
    /// List delivery ledger rows: who got which edition, what is pending and why.
    Deliveries {
        /// Only this list.
        #[arg(long, value_name = "SLUG")]
        list: Option<String>,
        /// Only rows in this state.
        #[arg(long, value_parser = ["pending", "sending", "sent", "failed", "skipped"])]
        state: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Run collect, publish, compose and deliver in order, then print a summary.
    Run,
    /// List, add, remove, import and export subscribers.
    Subscribers {
        #[command(subcommand)]
        action: SubscribersCommand,
    },
    /// Serve the published site (feeds with ETag/304 and compression, pages) over HTTP.
    Serve {
        /// The address to listen on, instead of web.listen (e.g. 127.0.0.1:8080; port 0 picks a free one).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Run as a service: collect, publish, compose and deliver on their
    /// schedules (collect.schedule, each list's schedule in its timezone),
    /// and serve the feeds and the subscription pages; /healthz and /metrics
    /// on web.admin_listen or with the bearer token in HERALD_ADMIN_TOKEN.
    /// SIGTERM or Ctrl-C lets running jobs finish and exits 0.
    Daemon {
        /// The address to listen on, instead of web.listen.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// For herald's own integration tests, hidden (also from `--help`):
        /// the daemon's time is the RFC 3339 time in FILE, read again
        /// whenever the file changes, and each change wakes the scheduler
        /// (instead of the system clock and a wake-up every second). The
        /// daemon logs a warning when it runs on it. See
        /// `daemon::TestClock::follow_file`.
        #[arg(long, value_name = "FILE", hide = true, env = crate::config::env::ENV_TEST_CLOCK)]
        test_clock: Option<PathBuf>,
    },
    /// Show the last run of each stage, each source's state, and deliveries per list.
    Status,
    /// Show what came back after the handoff: bounces, complaints, delays and
    /// auto-replies (counts per list, way in and kind, then the latest events).
    Bounces {
        /// Show at most this many events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Count only the events of the last DAYS days.
        #[arg(long, value_name = "DAYS")]
        days: Option<u32>,
        /// Poll the bounce mailbox of [bounces.imap] once instead: read every
        /// message, act on the reports, move them to the processed folder, and
        /// say what was done. (The daemon polls by itself every every_secs.)
        #[arg(long, conflicts_with_all = ["limit", "days"])]
        poll: bool,
    },
    /// List published articles, take one down (unpublish) or put it back (republish).
    Articles {
        #[command(subcommand)]
        action: ArticlesCommand,
    },
    /// The store as a whole: copy it into another, empty one (e.g. SQLite into PostgreSQL).
    Store {
        #[command(subcommand)]
        action: StoreCommand,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_base_url(text: &str) -> Result<crate::types::BaseUrl, String> {
    crate::types::BaseUrl::parse(text).map_err(|e| e.to_string())
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{text}` is not an RFC 3339 time like 2026-11-24T07:00:00Z: {e}"))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let clock = make_clock(cli.now);
    match &cli.command {
        Command::Init { dir, force, base_url } => site::init(dir, *force, base_url.as_ref()),
        Command::Check { dns, feeds } => site::check(&cli.config, *dns, *feeds).await,
        Command::Status => {
            let (config, store) = open(&cli.config).await?;
            status::status(&config, &store).await
        }
        Command::Bounces { poll: true, .. } => {
            let (config, store) = open(&cli.config).await?;
            let result = bounces::poll(&config, &store, clock()).await;
            store.close().await;
            result
        }
        Command::Bounces { limit, days, .. } => {
            let (_, store) = open(&cli.config).await?;
            bounces::bounces(&store, *limit, *days, clock()).await
        }
        Command::Articles { action } => {
            let (config, store) = open(&cli.config).await?;
            let result = articles::articles(&config, &store, action, &clock).await;
            store.close().await;
            result
        }
        Command::Store { action } => {
            let (config, store) = open(&cli.config).await?;
            // Nothing may write while the store is read: no stages here,
            // no daemon anywhere.
            let _lock = RunLock::acquire(&config.root)?;
            if let Some(lease) = store.lease().await?.filter(|l| l.expires_at > Utc::now()) {
                bail!("{lease} holds this store; stop it before copying the store");
            }
            let result = store::store(&config, &store, action).await;
            store.close().await;
            result
        }
        Command::Subscribers { action } => {
            let (config, store) = open(&cli.config).await?;
            subscribers::subscribers(&config, &store, action, clock()).await
        }
        Command::Daemon { listen, test_clock } => {
            // Listened for first: a SIGTERM as soon as the port answers
            // stops the daemon cleanly.
            let shutdown = crate::pipeline::Shutdown::listen();
            if cli.now.is_some() {
                bail!("--now fixes the time, and herald daemon needs a clock that runs");
            }
            let clock = match test_clock {
                Some(path) => {
                    let clock = crate::daemon::TestClock::follow_file(path.clone())?;
                    tracing::warn!(
                        "the daemon's time comes from the test clock {}, not the system clock",
                        path.display()
                    );
                    clock.clock()
                }
                None => crate::daemon::DaemonClock::system(),
            };
            let (config, store) = open(&cli.config).await?;
            // Before the lease, so a bad token or a busy port stops the
            // start without leaving a lease behind for daemon.lease_secs.
            let token = crate::web::admin::Token::from_env()?;
            let addr = listen.unwrap_or(config.web.listen);
            let listener = crate::web::bind(addr).await?;
            let admin = crate::web::admin::Access::bind(&config.web, token).await?;
            let bounces = match config.bounces.listen {
                Some(addr) => Some(crate::bounces::listener::bind(addr).await?),
                None => None,
            };
            let lease = crate::daemon::take_lease(&config, &store).await?;
            let _lock = RunLock::acquire(&config.root)?;
            let templates = load_templates(&config);
            let bound = listener.local_addr().unwrap_or(addr);
            eprintln!("herald daemon: serving http://{bound}/; {}", admin.describe(bound));
            if let Some(smtp) = bounces.as_ref().and_then(|l| l.local_addr().ok()) {
                eprintln!("herald daemon: taking delivery reports over SMTP on {smtp}");
            }
            let result = crate::daemon::run(
                config,
                store.clone(),
                templates,
                listener,
                bounces,
                admin,
                lease,
                shutdown,
                clock,
            )
            .await;
            store.close().await;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen } => {
            let shutdown = crate::pipeline::Shutdown::listen();
            let (config, store) = open(&cli.config).await?;
            let addr = listen.unwrap_or(config.web.listen);
            let listener = crate::web::bind(addr).await?;
            let bound = listener.local_addr().unwrap_or(addr);
            println!(
                "serving {} on http://{bound}/ (feeds at /feed.xml, /atom.xml, /feed.json); Ctrl-C stops",
                config.feeds.output_dir.display()
            );
            let _ = std::io::stdout().flush();
            let templates = load_templates(&config);
            let shutdown = shutdown.wait();
            crate::web::serve(&config, store.clone(), templates, listener, shutdown, None).await?;
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deliveries { list, state, limit } => {
            let (config, store) = open(&cli.config).await?;
            if let Some(list) = list {
                list_slug(&config, list)?;
            }
            deliveries::deliveries(&store, list.as_deref(), state.as_deref(), *limit).await
        }
        Command::Compose { preview: Some(file), list, .. } => {
            let (config, store) = open(&cli.config).await?;
            site::preview(&config, &store, list.as_deref(), file, clock()).await
        }
        Command::Compose { dry_run: true, .. } => {
            let (config, store) = open(&cli.config).await?;
            site::compose_dry_run(&config, &store, clock()).await
        }
        Command::Deliver { dry_run: true, .. } => {
            let (config, store) = open(&cli.config).await?;
            deliveries::dry_run(&config, &store, clock()).await
        }
        Command::Deliver { test: Some(address), list: Some(list), .. } => {
            let (config, store) = open(&cli.config).await?;
            deliveries::send_test(&config, &store, list, address, clock()).await
        }
        Command::Deliver { pause: Some(list), .. } => {
            let (config, store) = open(&cli.config).await?;
            let list = list_slug(&config, list)?;
            store.pause_list(list, clock()).await?;
            println!("paused sending for {list}; `herald deliver --resume {list}` resumes it");
            Ok(ExitCode::SUCCESS)
        }
        Command::Deliver { resume: Some(list), .. } => {
            let (config, store) = open(&cli.config).await?;
            let list = list_slug(&config, list)?;
            store.resume_list(list).await?;
            println!("resumed sending for {list}; the next `herald deliver` sends what is due");
            Ok(ExitCode::SUCCESS)
        }
        Command::Collect
        | Command::Publish
        | Command::Compose { .. }
        | Command::Deliver { .. }
        | Command::Run => {
            let (config, store) = open(&cli.config).await?;
            let _lock = RunLock::acquire(&config.root)?;
            if let Some(lease) = store.lease().await?.filter(|l| l.expires_at > Utc::now()) {
                bail!("{lease} runs the stages for this store; stop it first, or leave the work to it");
            }
            let result = stages::stages(&config, &store, &cli.command, &clock).await;
            store.close().await;
            result
        }
    }
}

/// The one place the command line reads the clock.
fn make_clock(fixed: Option<DateTime<Utc>>) -> deliver::Clock {
    match fixed {
        Some(t) => Arc::new(move || t),
        None => Arc::new(Utc::now),
    }
}

async fn open(config_path: &Path) -> Result<(Config, Store)> {
    let config = load_config(config_path)?;
    let store = Store::open_with(&config.store.url, config.store.options()).await?;
    Ok((config, store))
}

fn load_config(path: &Path) -> Result<Config> {
    config::load(path).map_err(anyhow::Error::new)
}

/// Loads the templates. A broken one is logged and left out: the stages
/// that need it fail, the others run.
pub(crate) fn load_templates(config: &Config) -> Templates {
    let templates = templates::load(&config.site.templates_dir);
    if !config.site.templates_dir.is_dir() {
        tracing::warn!(
            "site.templates_dir {} does not exist; using the built-in templates",
            config.site.templates_dir.display()
        );
    } else {
        for name in &templates.builtin_used {
            tracing::info!(
                "{} has no {name}; using the built-in template",
                config.site.templates_dir.display()
            );
        }
    }
    for (_, error) in &templates.broken {
        tracing::error!("{error}");
    }
    templates
}

/// Only one herald at a time runs stages against one site.
struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    fn acquire(root: &Path) -> Result<Self> {
        let path = root.join(".herald.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another herald is already running stages for this site (it holds {}); wait for it to finish",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

pub(crate) fn list_slug<'a>(config: &'a Config, slug: &str) -> Result<&'a str> {
    match config.list(slug) {
        Some(list) => Ok(list.slug.as_str()),
        None => {
            let known: Vec<&str> = config.lists.iter().map(|l| l.slug.as_str()).collect();
            bail!(
                "there is no list `{slug}` in {} (lists: {})",
                config.path.display(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
        }
    }
}
