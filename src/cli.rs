//! The command line: each command loads what it needs, calls one stage or
//! one store operation, and prints what happened. No business logic here.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::collect::{self, CollectReport, Problem};
use crate::compose::{self, ComposeReport};
use crate::config::{self, Config};
use crate::deliver::{self, DeliverOptions, DeliverReport};
use crate::email::{clean_display_name, EmailAddress};
use crate::publish::{self, PublishReport};
use crate::store::{AddOutcome, Origin, StageRun, Store};
use crate::subscribe::{self, Secret};
use crate::templates::{self, Templates};

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
        #[arg(long, value_name = "FILE.html")]
        preview: Option<PathBuf>,
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
    },
    /// Show the last run of each stage, each source's state, and deliveries per list.
    Status,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// List members with their status (all lists, or one).
    List {
        /// Only this list's members.
        #[arg(long, value_name = "SLUG")]
        list: Option<String>,
    },
    /// Add a confirmed member to a list.
    Add {
        /// The reader's address.
        email: String,
        /// The reader's name, used in the greeting and the To header.
        #[arg(long)]
        name: Option<String>,
        /// The list's slug, as in herald.toml.
        #[arg(long, value_name = "SLUG")]
        list: String,
    },
    /// Unsubscribe a member from a list (they will not be re-added by imports).
    Remove {
        /// The reader's address.
        email: String,
        /// The list's slug, as in herald.toml.
        #[arg(long, value_name = "SLUG")]
        list: String,
    },
    /// Import a CSV file (header `email,name`) as confirmed members; bad rows are reported with their line.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The list's slug, as in herald.toml.
        #[arg(long, value_name = "SLUG")]
        list: String,
    },
    /// Delete everything herald holds about an address (its memberships and
    /// delivery records); only a hash of it is kept, so no import adds it back.
    Forget {
        /// The reader's address.
        email: String,
    },
    /// Write a list's members as CSV on standard output.
    Export {
        /// The list's slug, as in herald.toml.
        #[arg(long, value_name = "SLUG")]
        list: String,
        /// Include pending and unsubscribed members, with status, origin, subscribed_at and changed_at columns.
        #[arg(long)]
        all: bool,
    },
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
        Command::Init { dir, force } => init(dir, *force),
        Command::Check { dns, feeds } => check(&cli.config, *dns, *feeds).await,
        Command::Status => {
            let (config, store) = open(&cli.config).await?;
            status(&config, &store).await
        }
        Command::Subscribers { action } => {
            let (config, store) = open(&cli.config).await?;
            subscribers(&config, &store, action, clock()).await
        }
        Command::Daemon { listen } => {
            let (config, store) = open(&cli.config).await?;
            // Before the lease: a bad token stops the start, not the store.
            let token = crate::web::admin::Token::from_env()?;
            let me = crate::daemon::take_lease(&config, &store).await?;
            let _lock = RunLock::acquire(&config.root)?;
            let templates = load_templates(&config)?;
            let addr = listen.unwrap_or(config.web.listen);
            let listener = crate::web::bind(addr).await?;
            let admin = crate::web::admin::Access::bind(&config.web, token).await?;
            let bound = listener.local_addr().unwrap_or(addr);
            eprintln!("herald daemon: serving http://{bound}/; {}", admin.describe(bound));
            let result =
                crate::daemon::run(config, store.clone(), templates, listener, admin, me).await;
            store.close().await;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen } => {
            let (config, store) = open(&cli.config).await?;
            let addr = listen.unwrap_or(config.web.listen);
            let listener = crate::web::bind(addr).await?;
            let bound = listener.local_addr().unwrap_or(addr);
            println!(
                "serving {} on http://{bound}/ (feeds at /feed.xml, /atom.xml, /feed.json); Ctrl-C stops",
                config.feeds.output_dir.display()
            );
            let _ = std::io::stdout().flush();
            let templates = load_templates(&config)?;
            crate::web::serve(&config, store.clone(), templates, listener, shutdown_signal(), None)
                .await?;
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deliveries { list, state, limit } => {
            let (config, store) = open(&cli.config).await?;
            if let Some(list) = list {
                list_slug(&config, list)?;
            }
            deliveries(&store, list.as_deref(), state.as_deref(), *limit).await
        }
        Command::Compose { preview: Some(file), list } => {
            let (config, store) = open(&cli.config).await?;
            preview(&config, &store, list.as_deref(), file, clock()).await
        }
        Command::Deliver { dry_run: true, .. } => {
            let (config, store) = open(&cli.config).await?;
            dry_run(&config, &store, clock()).await
        }
        Command::Deliver { test: Some(address), list: Some(list), .. } => {
            let (config, store) = open(&cli.config).await?;
            send_test(&config, &store, list, address, clock()).await
        }
        Command::Deliver { pause: Some(list), .. } => {
            let (config, store) = open(&cli.config).await?;
            let list = list_slug(&config, list)?;
            store.set_setting(&deliver::pause_key(list), &clock().to_rfc3339()).await?;
            println!("paused sending for {list}; `herald deliver --resume {list}` resumes it");
            Ok(ExitCode::SUCCESS)
        }
        Command::Deliver { resume: Some(list), .. } => {
            let (config, store) = open(&cli.config).await?;
            let list = list_slug(&config, list)?;
            store.delete_setting(&deliver::pause_key(list)).await?;
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
            let result = stages(&config, &store, &cli.command, &clock).await;
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
    let store = Store::open(&config.store.url).await?;
    Ok((config, store))
}

fn load_config(path: &Path) -> Result<Config> {
    config::load(path).map_err(anyhow::Error::new)
}

pub(crate) fn load_templates(config: &Config) -> Result<Templates> {
    let templates = templates::load(&config.site.templates_dir).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("{} template problem(s):\n{}", errors.len(), lines.join("\n"))
    })?;
    for name in &templates.builtin_used {
        tracing::info!(
            "{} has no {name}; using the built-in template",
            config.site.templates_dir.display()
        );
    }
    Ok(templates)
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

// ---------------------------------------------------------------------------
// Stages

async fn stages(
    config: &Config,
    store: &Store,
    command: &Command,
    clock: &deliver::Clock,
) -> Result<ExitCode> {
    let mut problems: Vec<String> = Vec::new();
    let mut summary = Vec::new();
    let all = matches!(command, Command::Run);

    if all || matches!(command, Command::Collect) {
        let started = clock();
        let report = collect::collect(config, store, started).await;
        record(store, "collect", started, clock(), &report, collect_summary).await;
        let report = report?;
        problems.extend(report.problems.iter().map(ToString::to_string));
        problems.extend(
            report
                .sources
                .iter()
                .filter_map(|s| s.error.as_ref().map(|e| format!("source `{}`: {e}", s.name))),
        );
        summary.push(("collected", collect_summary(&report)));
    }
    if all || matches!(command, Command::Publish) {
        let templates = load_templates(config)?;
        let started = clock();
        let report = publish::publish(config, store, &templates, started).await;
        record(store, "publish", started, clock(), &report, |r| publish_summary(config, r)).await;
        summary.push(("published", publish_summary(config, &report?)));
    }
    if all || matches!(command, Command::Compose { .. }) {
        let templates = load_templates(config)?;
        let started = clock();
        let sync = subscribe::sync_list_files(config, store, started).await?;
        problems.extend(sync.problems.iter().map(ToString::to_string));
        let report = compose::compose(config, store, &templates, started).await;
        record(store, "compose", started, clock(), &report, compose_summary).await;
        let report = report?;
        if all && !report.composed.is_empty() {
            // The new edition's web page, which its mail links to, exists
            // before the mail goes out.
            let templates = load_templates(config)?;
            publish::publish(config, store, &templates, clock()).await?;
        }
        summary.push(("composed", compose_summary(&report)));
    }
    if all || matches!(command, Command::Deliver { .. }) {
        let templates = load_templates(config)?;
        let secret = Secret::resolve(store).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let on_signal = Arc::clone(&stop);
        let signals = tokio::spawn(async move {
            // SIGINT (Ctrl-C) or SIGTERM (systemd, kill): stop claiming,
            // finish and record what is in flight, exit with the summary.
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!(
                "herald: stopping after the messages in flight (press Ctrl-C again to abort)"
            );
            on_signal.store(true, Ordering::Relaxed);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
        let options =
            DeliverOptions { progress: std::io::stderr().is_terminal(), stop: Some(stop) };
        let started = clock();
        let report = deliver::deliver(config, store, &templates, &secret, clock, &options).await;
        signals.abort();
        record(store, "deliver", started, clock(), &report, deliver_summary).await;
        let report = report?;
        if report.failed > 0 {
            problems.push(format!(
                "{} message(s) failed for good; `herald status` shows them per list",
                report.failed
            ));
        }
        summary.push(("delivered", deliver_summary(&report)));
    }

    let mut out = String::new();
    for (stage, line) in &summary {
        let _ = writeln!(out, "{stage:<10} {line}");
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
    for p in &problems {
        eprintln!("warning: {p}");
    }
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("herald: finished with {} problem(s); everything else was done", problems.len());
        Ok(ExitCode::FAILURE)
    }
}

/// Records a stage's outcome for `herald status`. A failure to record is
/// logged, not fatal: the stage's own work is already stored.
pub(crate) async fn record<T, E: std::fmt::Display>(
    store: &Store,
    stage: &str,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    result: &Result<T, E>,
    summary: impl Fn(&T) -> String,
) {
    let (ok, summary) = match result {
        Ok(report) => (true, summary(report)),
        Err(e) => (false, e.to_string()),
    };
    let run = StageRun {
        stage: stage.to_owned(),
        started_at: started,
        finished_at: finished,
        ok,
        summary,
    };
    if let Err(e) = store.record_stage(&run).await {
        tracing::warn!("cannot record the {stage} run: {e}");
    }
}

pub(crate) fn collect_summary(r: &CollectReport) -> String {
    let unchanged: usize = r.sources.iter().map(|s| s.unchanged).sum();
    let mut line = format!(
        "{} new, {} updated, {} unchanged article(s) from {} source(s)",
        r.new_articles(),
        r.updated_articles(),
        unchanged,
        r.sources.len()
    );
    if !r.problems.is_empty() {
        let _ = write!(line, "; {} file(s) skipped", r.problems.len());
    }
    if r.failed_sources() > 0 {
        let _ = write!(line, "; {} source(s) failed", r.failed_sources());
    }
    line
}

pub(crate) fn publish_summary(config: &Config, r: &PublishReport) -> String {
    let feeds = match r.feeds_written.len() {
        0 => "feeds unchanged".to_string(),
        1..=3 => format!("{} written", r.feeds_written.join(", ")),
        n => format!("{} and {} more feed file(s) written", r.feeds_written[..3].join(", "), n - 3),
    };
    format!(
        "{feeds} ({} article(s)); {} page(s) written, {} unchanged; {} asset(s) copied; {} edition page(s) written → {}",
        r.articles,
        r.pages_written,
        r.pages_unchanged,
        r.assets_copied,
        r.editions_written,
        config.feeds.output_dir.display()
    )
}

pub(crate) fn compose_summary(r: &ComposeReport) -> String {
    let mut parts: Vec<String> = r
        .composed
        .iter()
        .map(|e| {
            format!(
                "{} {}: {} article(s) for {} reader(s)",
                e.list, e.date, e.articles, e.recipients
            )
        })
        .collect();
    parts.extend(r.skipped.iter().map(|(list, why)| format!("{list}: no edition ({why})")));
    if parts.is_empty() {
        "no lists configured".into()
    } else {
        format!("{} edition(s) — {}", r.composed.len(), parts.join("; "))
    }
}

pub(crate) fn deliver_summary(r: &DeliverReport) -> String {
    let mut line =
        format!("{} sent, {} deferred, {} failed → {}", r.sent, r.deferred, r.failed, r.transport);
    if let Some(next) = r.next_retry {
        let _ = write!(line, "; next retry after {}", next.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    if r.suppressed > 0 {
        let _ = write!(line, "; {} address(es) suppressed after hard bounces", r.suppressed);
    }
    if let Some(why) = &r.stopped {
        let _ = write!(line, "; stopped early ({why}): rerun `herald deliver` to finish");
    }
    if !r.paused.is_empty() {
        let _ = write!(line, "; paused: {}", r.paused.join(", "));
    }
    line
}

// ---------------------------------------------------------------------------
// init, check

fn init(dir: &Path, force: bool) -> Result<ExitCode> {
    let written = crate::scaffold::write_site(dir, force)?;
    println!("Wrote {} files into {}:", written.len(), dir.display());
    for path in &written {
        println!("  {}", path.strip_prefix(dir).unwrap_or(path).display());
    }
    let cd =
        if dir == Path::new(".") { String::new() } else { format!("cd {} && ", dir.display()) };
    println!("\nNext: {cd}herald run    (feeds go to public/, mail to outbox/)");
    Ok(ExitCode::SUCCESS)
}

async fn check(config_path: &Path, dns: bool, feeds: bool) -> Result<ExitCode> {
    let mut problems: Vec<String> = Vec::new();
    let config = match config::load(config_path) {
        Ok(config) => Some(config),
        Err(e) => {
            problems.extend(e.problems());
            None
        }
    };
    if let Some(config) = &config {
        match templates::load(&config.site.templates_dir) {
            Ok(t) => {
                // Render each template once with sample data, so unknown
                // variables and filters show up now, not at send time.
                problems.extend(sample_render(config, &t));
            }
            Err(errors) => problems.extend(errors.iter().map(ToString::to_string)),
        }
        for source in &config.sources {
            match &source.kind {
                config::SourceKind::Dir { path } => {
                    match collect::dir::read_dir_source(
                        source.name.as_str(),
                        path,
                        &source.tags,
                        &config.site.base_url,
                    ) {
                        Ok((_, file_problems)) => {
                            problems.extend(file_problems.iter().map(ToString::to_string))
                        }
                        Err(e) => problems.push(format!("source `{}`: {e}", source.name)),
                    }
                }
                // Checked when collected: `herald check` does not go online.
                config::SourceKind::Feed { .. } => {}
            }
        }
        if let Some(dkim) = &config.mail.dkim {
            if let Err(e) = compose::load_dkim(dkim, config.mail.reply_to.is_some()) {
                problems.push(e.to_string());
            }
        }
        for list in &config.lists {
            if list.subscribers.exists() {
                match subscribe::csv::read_csv(&list.subscribers) {
                    Ok((_, rows)) => problems.extend(rows.iter().map(ToString::to_string)),
                    Err(p) => problems.push(p.to_string()),
                }
            }
        }
    }
    if let (true, Some(config)) = (feeds, &config) {
        problems.extend(publish::check::check_feeds(
            &config.feeds.output_dir,
            &config.site.base_url,
            config.feeds.hub.as_ref(),
        ));
    }
    if let (true, Some(config)) = (dns, &config) {
        let (dns_problems, notes) = check_dns(config).await;
        for note in notes {
            println!("{note}");
        }
        problems.extend(dns_problems);
    }
    if problems.is_empty() {
        let config = config.as_ref().map(|c| c.path.display().to_string()).unwrap_or_default();
        println!("{config}: no problems found");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            println!("{p}");
        }
        eprintln!("herald check: {} problem(s)", problems.len());
        Ok(ExitCode::FAILURE)
    }
}

fn sample_render(config: &Config, t: &Templates) -> Vec<String> {
    use crate::article::{Article, StoredArticle};
    let now = Utc::now();
    let sample = StoredArticle {
        id: 1,
        article: Article {
            source: "sample".into(),
            guid: "sample".into(),
            url: config.site.base_url.join("sample/").to_string(),
            title: "A sample article".into(),
            author: Some("A. Writer".into()),
            published: now,
            updated: None,
            summary: Some("A summary.".into()),
            content_html: "<p>Text.</p>".into(),
            tags: vec!["sample".into()],
        },
        content_hash: String::new(),
        first_seen: now,
    };
    let mut problems = Vec::new();
    for list in &config.lists {
        let mut context =
            compose::digest_context(config, list, now.date_naive(), std::slice::from_ref(&sample));
        match templates::render_string(&list.subject, &context) {
            Ok(subject) => context.insert("subject", &subject),
            Err(e) => problems.push(format!(
                "{}: list `{}`: subject: {e}",
                config.path.display(),
                list.slug
            )),
        }
        context.insert(
            "subscriber",
            &serde_json::json!({ "name": "Sample Reader", "email": "reader@example.com" }),
        );
        context.insert(
            "unsubscribe_url",
            &config.site.base_url.join("unsubscribe?token=sample").to_string(),
        );
        for name in ["digest.html", "digest.txt"] {
            if let Err(e) = t.tera.render(name, &context) {
                problems.push(format!(
                    "{}: rendering for list `{}`: {}",
                    config.site.templates_dir.join(name).display(),
                    list.slug,
                    templates::error_chain(&e)
                ));
            }
        }
    }
    for (name, sample) in crate::web::signup::samples(config) {
        let rendered =
            tera::Context::from_value(sample).and_then(|context| t.tera.render(name, &context));
        if let Err(e) = rendered {
            problems.push(format!(
                "{}: {}",
                config.site.templates_dir.join(name).display(),
                templates::error_chain(&e)
            ));
        }
    }
    let mut context = tera::Context::new();
    context.insert("site", &templates::site_context(config));
    context.insert("article", &templates::article_context(&sample));
    if let Err(e) = t.tera.render("web/article.html", &context) {
        problems.push(format!(
            "{}: {}",
            config.site.templates_dir.join("web/article.html").display(),
            templates::error_chain(&e)
        ));
    }
    problems
}

// ---------------------------------------------------------------------------
// subscribers, status

fn list_slug<'a>(config: &'a Config, slug: &str) -> Result<&'a str> {
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

async fn subscribers(
    config: &Config,
    store: &Store,
    action: &SubscribersCommand,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    match action {
        SubscribersCommand::List { list } => {
            if let Some(list) = list {
                list_slug(config, list)?;
            }
            let members = store.members(list.as_deref()).await?;
            let mut out = String::new();
            for m in &members {
                let _ = writeln!(
                    out,
                    "{:<12} {:<40} {:<13} {:<4} {}  {}",
                    m.list,
                    m.email,
                    m.status.as_str(),
                    m.origin,
                    m.changed_at.format("%Y-%m-%d"),
                    m.name.as_deref().unwrap_or("")
                );
            }
            print!("{out}");
            eprintln!("{} member(s)", members.len());
            Ok(ExitCode::SUCCESS)
        }
        SubscribersCommand::Add { email, name, list } => {
            let list = list_slug(config, list)?;
            let email = EmailAddress::parse(email)?;
            let row = (email.clone(), name.as_deref().and_then(clean_display_name));
            let (_, outcomes) =
                subscribe::import_rows(store, list, &[row], Origin::Cli, now).await?;
            match outcomes.first() {
                Some(AddOutcome::Added) => println!("added {email} to {list}"),
                Some(AddOutcome::Confirmed) => {
                    println!("confirmed {email}'s pending sign-up to {list}")
                }
                Some(AddOutcome::AlreadyMember) => {
                    println!("{email} is already a member of {list}")
                }
                Some(AddOutcome::RefusedUnsubscribed) => {
                    bail!("{email} unsubscribed from {list}; herald does not subscribe them again")
                }
                Some(AddOutcome::RefusedSuppressed { reason }) => {
                    bail!("{email} is suppressed ({reason}) and gets no mail")
                }
                None => bail!("nothing was added"),
            }
            Ok(ExitCode::SUCCESS)
        }
        SubscribersCommand::Remove { email, list } => {
            let list = list_slug(config, list)?;
            let email = EmailAddress::parse(email)?;
            if store.unsubscribe(list, &email, now).await? {
                println!("unsubscribed {email} from {list}");
                Ok(ExitCode::SUCCESS)
            } else {
                bail!("{email} is not a member of {list}")
            }
        }
        SubscribersCommand::Import { file, list } => {
            let list = list_slug(config, list)?;
            let (rows, problems) =
                subscribe::csv::read_csv(file).map_err(|p| anyhow::anyhow!("{p}"))?;
            let (counts, _) = subscribe::import_rows(store, list, &rows, Origin::Csv, now).await?;
            println!(
                "{list}: {} added, {} confirmed, {} already members, {} refused (unsubscribed), {} refused (suppressed)",
                counts.added, counts.confirmed, counts.already, counts.refused_unsubscribed, counts.refused_suppressed
            );
            print_problems(&problems)
        }
        SubscribersCommand::Forget { email } => {
            let email = EmailAddress::parse(email)?;
            if store.forget(&email, now).await? {
                println!("forgot {email}: its memberships and delivery records are deleted; a hash of the address stays among the suppressions, so no import adds it back");
            } else {
                println!("herald held nothing about {email}; a hash of it is now among the suppressions, so no import adds it");
            }
            Ok(ExitCode::SUCCESS)
        }
        SubscribersCommand::Export { list, all } => {
            let list = list_slug(config, list)?;
            print!("{}", subscribe::export_csv(store, list, *all).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_problems(problems: &[Problem]) -> Result<ExitCode> {
    for p in problems {
        eprintln!("warning: {p}");
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn status(config: &Config, store: &Store) -> Result<ExitCode> {
    let mut out = String::new();
    let when = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();

    let _ = writeln!(out, "Stages");
    let runs = store.stage_runs().await?;
    for stage in ["collect", "publish", "compose", "deliver"] {
        match runs.iter().find(|r| r.stage == stage) {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  {stage:<8} {}  {:<6} {}",
                    when(r.finished_at),
                    if r.ok { "ok" } else { "FAILED" },
                    r.summary
                );
            }
            None => {
                let _ = writeln!(out, "  {stage:<8} never run");
            }
        }
    }

    let _ = writeln!(out, "\nDaemon");
    match store.lease().await? {
        Some(lease) if lease.expires_at > Utc::now() => {
            let _ = writeln!(out, "  {lease}");
        }
        Some(lease) => {
            let _ = writeln!(
                out,
                "  none running; the last was {lease}, and it stopped without a word"
            );
        }
        None => {
            let _ = writeln!(out, "  none running");
        }
    }

    let _ = writeln!(out, "\nSources");
    let states = store.source_states().await?;
    for source in &config.sources {
        match states.iter().find(|s| s.name == source.name.as_str()) {
            Some(s) => {
                let mut health = match &s.last_error {
                    Some(e) => {
                        format!("FAILING ({} time(s) in a row): {e}", s.consecutive_failures)
                    }
                    None => "ok".into(),
                };
                if let Some(next) = s.next_try {
                    health.push_str(&format!("; next try after {}", when(next)));
                }
                if let Some(moved) = &s.moved_to {
                    health.push_str(&format!("; moved permanently to {moved}"));
                }
                if let Some(gone) = &s.gone_since {
                    health.push_str(&format!("; disabled: 410 Gone since {gone}"));
                }
                let _ = writeln!(
                    out,
                    "  {:<12} {:<4} {} article(s), last success {}  {health}",
                    s.name,
                    s.kind,
                    s.articles,
                    s.last_success.map_or("never".into(), when),
                );
            }
            None => {
                let _ = writeln!(out, "  {:<12} not collected yet", source.name);
            }
        }
    }

    let _ = writeln!(out, "\nLists");
    for list in &config.lists {
        let audience = store.audience(list.slug.as_str()).await?;
        let last = store.last_edition(list.slug.as_str()).await?;
        let _ = writeln!(
            out,
            "  {:<12} {audience} confirmed reader(s); last edition {}",
            list.slug,
            last.map_or("none".into(), |e| e.edition_date.to_string())
        );
    }

    let audience = store.feed_audience(Utc::now()).await?;
    let _ = writeln!(out, "\nFeed audience (from `herald serve`)");
    if audience.aggregators.is_empty() && audience.pollers_today == 0 {
        let _ = writeln!(out, "  no feed reader seen yet");
    } else {
        let _ = writeln!(out, "  about {} reader(s)", audience.estimate());
        for (name, n) in &audience.aggregators {
            let _ = writeln!(out, "  {name}: {n} subscriber(s)");
        }
        let _ = writeln!(out, "  {} other poller(s) on the latest day", audience.pollers_today);
    }

    let _ = writeln!(out, "\nDeliveries (newest editions)");
    let counts = store.delivery_counts(10).await?;
    if counts.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for c in counts {
        let _ = write!(
            out,
            "  {:<12} {}  {} sent, {} pending, {} failed, {} skipped",
            c.list,
            c.edition_date,
            c.sent,
            c.pending + c.sending,
            c.failed,
            c.skipped
        );
        if let Some(next) = c.next_attempt_at {
            let _ = write!(out, " (next retry {next})");
        }
        let _ = writeln!(out);
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------
// deliver --dry-run, --test; compose --preview; deliveries

async fn dry_run(config: &Config, store: &Store, now: DateTime<Utc>) -> Result<ExitCode> {
    let mut out = String::new();
    let mut due = 0usize;
    for edition in store.editions_in_progress().await? {
        let paused = store.setting(&deliver::pause_key(&edition.list)).await?.is_some();
        for row in store.deliveries(Some(&edition.list), Some("pending"), usize::MAX).await? {
            if row.edition_date != edition.edition_date.to_string() {
                continue;
            }
            let when = match (&row.next_attempt_at, paused) {
                (_, true) => "paused".to_string(),
                (Some(t), _) if t.as_str() > crate::store::ts_text(now).as_str() => {
                    format!("not before {t}")
                }
                _ => {
                    due += 1;
                    "now".to_string()
                }
            };
            let _ = writeln!(
                out,
                "{} {}  {:<40} {}  attempt {}  {when}",
                edition.list,
                edition.edition_date,
                row.email,
                row.message_id,
                row.attempts + 1
            );
        }
    }
    print!("{out}");
    let transport = deliver::Transport::from_config(&config.mail)?.describe();
    println!("{due} message(s) due now, to {transport}; nothing was sent (--dry-run)");
    Ok(ExitCode::SUCCESS)
}

async fn send_test(
    config: &Config,
    store: &Store,
    list: &str,
    address: &str,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    let list = list_slug(config, list)?;
    let email = EmailAddress::parse(address)?;
    let Some(edition) = store.last_edition(list).await? else {
        bail!("{list} has no edition yet; `herald compose` makes one (or `herald compose --preview FILE.html` to look first)");
    };
    let templates = load_templates(config)?;
    let secret = Secret::resolve(store).await?;
    let digest = compose::Digest::load(config, store, templates, secret, &edition).await?;
    let recipient = compose::Recipient {
        subscriber: 0,
        email: email.to_string(),
        name: None,
        message_id: format!(
            "<herald.test.{list}.{}.{}@{}>",
            edition.edition_date.format("%Y%m%d"),
            now.timestamp(),
            compose::message_id_domain(config)
        ),
    };
    let message = digest.message(&recipient, now)?;
    let transport = Arc::new(deliver::Transport::from_config(&config.mail)?);
    let mut sender = deliver::Sender::new(Arc::clone(&transport), 0);
    let outcome = sender.send(&message, &format!("test-{list}-{}", now.timestamp())).await;
    sender.close().await;
    match outcome {
        deliver::SendOutcome::Sent { reply } => {
            println!(
                "sent {list}'s edition of {} to {email} via {} ({reply}); the ledger is unchanged",
                edition.edition_date,
                transport.describe()
            );
            Ok(ExitCode::SUCCESS)
        }
        deliver::SendOutcome::Retry { error, .. } | deliver::SendOutcome::Failed { error } => {
            bail!("could not send the test message to {email}: {error}")
        }
    }
}

async fn preview(
    config: &Config,
    store: &Store,
    list: Option<&str>,
    file: &Path,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    let list = match list {
        Some(slug) => config.list(list_slug(config, slug)?),
        None => config.lists.first(),
    }
    .with_context(|| format!("there are no [[lists]] in {}", config.path.display()))?;
    let templates = load_templates(config)?;
    let date = now.with_timezone(&list.timezone).date_naive();
    let (articles, what) = match store.edition(list.slug.as_str(), date).await? {
        Some(edition) => {
            (store.articles_by_ids(&edition.article_ids).await?, format!("the edition of {date}"))
        }
        None => {
            let cursor =
                store.last_edition(list.slug.as_str()).await?.map_or(0, |e| e.article_cursor);
            let mut articles = store.articles_between(cursor, i64::MAX).await?;
            articles.truncate(list.max_articles);
            (articles, format!("the edition {date} would be (not stored)"))
        }
    };
    let mut context = compose::digest_context(config, list, date, &articles);
    let subject = templates::render_string(&list.subject, &context)
        .map_err(|e| anyhow::anyhow!("subject: {e}"))?;
    context.insert("subject", &subject);
    context.insert(
        "subscriber",
        &serde_json::json!({ "name": "Sample Reader", "email": "reader@example.com" }),
    );
    context.insert(
        "unsubscribe_url",
        &config.site.base_url.join("unsubscribe?token=preview").to_string(),
    );
    let (html, _) = compose::render_digest(&templates, &context, list.slug.as_str())?;
    crate::fsutil::write_atomic(file, html.as_bytes(), crate::fsutil::Durability::ProcessCrash)
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "wrote {} ({}, {} article(s), subject: {subject})",
        file.display(),
        what,
        articles.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn deliveries(
    store: &Store,
    list: Option<&str>,
    state: Option<&str>,
    limit: usize,
) -> Result<ExitCode> {
    let rows = store.deliveries(list, state, limit).await?;
    let mut out = String::new();
    for r in &rows {
        let detail = match r.state.as_str() {
            "sent" => r.reply.clone().unwrap_or_default(),
            "pending" => match (&r.next_attempt_at, &r.last_error) {
                (Some(next), Some(e)) => format!("retry after {next}: {e}"),
                _ => String::new(),
            },
            _ => r.last_error.clone().unwrap_or_default(),
        };
        let _ = writeln!(
            out,
            "{:<12} {}  {:<40} {:<8} {} attempt(s)  {detail}",
            r.list, r.edition_date, r.email, r.state, r.attempts
        );
    }
    print!("{out}");
    eprintln!("{} row(s)", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// Looks up SPF, the DKIM key and DMARC for the sending domain. Returns the
/// problems and the lines that are fine (or why the lookups were skipped).
async fn check_dns(config: &Config) -> (Vec<String>, Vec<String>) {
    use crate::deliver::dns;
    let (mut problems, mut notes) = (Vec::new(), Vec::new());
    let server = match dns::server() {
        Ok(server) => server,
        Err(e) => {
            notes.push(format!("DNS checks skipped: {e}"));
            return (problems, notes);
        }
    };
    let domain = config.mail.from.email.domain().to_owned();
    let lookup = |name: String| async move { (dns::txt(server, &name).await, name) };

    let (spf, name) = lookup(domain.clone()).await;
    let spf = match spf {
        Ok(records) => records,
        Err(e @ (dns::DnsError::Timeout { .. } | dns::DnsError::Io { .. })) => {
            notes.push(format!("DNS checks skipped: {e} (is there a network?)"));
            return (problems, notes);
        }
        Err(e) => {
            problems.push(format!("SPF: {e}"));
            Vec::new()
        }
    };
    let spf: Vec<&String> =
        spf.iter().filter(|r| r.to_ascii_lowercase().starts_with("v=spf1")).collect();
    match spf.len() {
        0 => problems.push(format!(
            "SPF: {name} has no SPF record; publish a TXT record like \"v=spf1 include:<your relay's domain> ~all\""
        )),
        1 => notes.push(format!("ok: SPF for {name}: {}", spf[0])),
        n => problems.push(format!(
            "SPF: {name} has {n} SPF records, which receivers treat as an error (RFC 7208 section 3.2); merge them into one"
        )),
    }

    match &config.mail.dkim {
        Some(dkim) => {
            let (key, name) = lookup(format!("{}._domainkey.{}", dkim.selector, dkim.domain)).await;
            match key {
                Ok(records) => match records.iter().find(|r| r.contains("p=")) {
                    Some(record) => {
                        let want = match dkim.algorithm {
                            crate::config::DkimAlgorithm::Rsa => "rsa",
                            crate::config::DkimAlgorithm::Ed25519 => "ed25519",
                        };
                        let k = record
                            .split(';')
                            .find_map(|t| t.trim().strip_prefix("k="))
                            .unwrap_or("rsa")
                            .trim()
                            .to_ascii_lowercase();
                        if k != want {
                            problems.push(format!("DKIM: {name} publishes a k={k} key but herald signs with {want}"));
                        } else if record.contains("p=;") || record.trim_end().ends_with("p=") {
                            problems.push(format!("DKIM: {name} has an empty key (p=): the selector is revoked"));
                        } else {
                            notes.push(format!("ok: DKIM key at {name}"));
                        }
                    }
                    None => problems.push(format!(
                        "DKIM: no key at {name}; publish a TXT record \"v=DKIM1; k=rsa; p=<the public key of {}>\"",
                        dkim.key_file.display()
                    )),
                },
                Err(e) => problems.push(format!("DKIM: {e}")),
            }
        }
        None => notes.push(
            "note: DKIM signing is off (set mail.dkim_selector and mail.dkim_key_file); many receivers distrust unsigned bulk mail"
                .into(),
        ),
    }

    let (dmarc, name) = lookup(format!("_dmarc.{domain}")).await;
    match dmarc {
        Ok(records) => match records.iter().find(|r| r.to_ascii_lowercase().starts_with("v=dmarc1")) {
            Some(record) => notes.push(format!("ok: DMARC at {name}: {record}")),
            None => problems.push(format!(
                "DMARC: no record at {name}; publish a TXT record like \"v=DMARC1; p=none; rua=mailto:dmarc@{domain}\""
            )),
        },
        Err(e) => problems.push(format!("DMARC: {e}")),
    }
    (problems, notes)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
