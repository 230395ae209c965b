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

use crate::collect::Problem;
use crate::compose;
use crate::config::{self, Config};
use crate::deliver::{self, DeliverOptions};
use crate::email::{clean_display_name, EmailAddress};
use crate::pipeline::{Pipeline, Ran, Summary};
use crate::store::{AddOutcome, ArticleEntry, Marked, Origin, Store, Withdrawn};
use crate::subscribe::{self, Secret};
use crate::templates::{self, Templates};
use crate::types::ArticleRef;

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
    },
    /// Show the last run of each stage, each source's state, and deliveries per list.
    Status,
    /// List published articles, take one down (unpublish) or put it back (republish).
    Articles {
        #[command(subcommand)]
        action: ArticlesCommand,
    },
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
        Command::Init { dir, force, base_url } => init(dir, *force, base_url.as_ref()),
        Command::Check { dns, feeds } => check(&cli.config, *dns, *feeds).await,
        Command::Status => {
            let (config, store) = open(&cli.config).await?;
            status(&config, &store).await
        }
        Command::Articles { action } => {
            let (config, store) = open(&cli.config).await?;
            let result = articles(&config, &store, action, &clock).await;
            store.close().await;
            result
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
            let templates = load_templates(&config);
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
            let templates = load_templates(&config);
            let shutdown = crate::pipeline::shutdown_signal();
            crate::web::serve(&config, store.clone(), templates, listener, shutdown, None).await?;
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
        Command::Compose { preview: Some(file), list, .. } => {
            let (config, store) = open(&cli.config).await?;
            preview(&config, &store, list.as_deref(), file, clock()).await
        }
        Command::Compose { dry_run: true, .. } => {
            let (config, store) = open(&cli.config).await?;
            compose_dry_run(&config, &store, clock()).await
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

// ---------------------------------------------------------------------------
// Stages

async fn stages(
    config: &Config,
    store: &Store,
    command: &Command,
    clock: &deliver::Clock,
) -> Result<ExitCode> {
    let all = matches!(command, Command::Run);
    let templates = load_templates(config);
    let pipeline = Pipeline { config, store, templates: &templates };
    let mut out = Report::default();

    if all || matches!(command, Command::Collect) {
        out.add("collected", config, pipeline.collect(clock()).await);
    }
    if all || matches!(command, Command::Publish) {
        out.add("published", config, pipeline.publish(clock()).await);
    }
    if all || matches!(command, Command::Compose { .. }) {
        let composed = pipeline.compose(clock(), None).await;
        let new_editions = composed.report.as_ref().is_ok_and(|r| !r.composed.is_empty());
        out.add("composed", config, composed);
        if all && new_editions {
            // The new edition's web page, which its mail links to, exists
            // before the mail goes out.
            let published = pipeline.publish(clock()).await;
            if let Err(e) = published.report {
                out.problems.push(e);
            }
        }
    }
    if all || matches!(command, Command::Deliver { .. }) {
        let secret = Secret::resolve(store).await.map_err(|e| e.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let on_signal = Arc::clone(&stop);
        let signals = tokio::spawn(async move {
            // SIGINT (Ctrl-C) or SIGTERM (systemd, kill): stop claiming,
            // finish and record what is in flight, exit with the summary.
            crate::pipeline::shutdown_signal().await;
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
        let delivered =
            pipeline.deliver(secret.as_ref().map_err(Clone::clone), clock, &options).await;
        signals.abort();
        out.add("delivered", config, delivered);
    }
    Ok(out.finish())
}

/// What the stages of one command did: a line each, and every problem.
#[derive(Default)]
struct Report {
    lines: Vec<(&'static str, String)>,
    /// Why stages failed, each a line on standard error.
    errors: Vec<String>,
    problems: Vec<String>,
}

impl Report {
    fn add<R: Summary>(&mut self, verb: &'static str, config: &Config, ran: Ran<R>) {
        match &ran.report {
            Ok(report) => self.lines.push((verb, report.summary(config))),
            Err(e) => {
                self.lines.push((verb, "FAILED (see below)".into()));
                self.errors.push(e.clone());
            }
        }
        self.problems.extend(ran.problems);
    }

    /// Prints the lines and the problems; exit code 1 when anything failed
    /// or was skipped (everything else was still done).
    fn finish(self) -> ExitCode {
        let mut out = String::new();
        for (stage, line) in &self.lines {
            let _ = writeln!(out, "{stage:<10} {line}");
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
        for e in &self.errors {
            eprintln!("error: {e}");
        }
        for p in &self.problems {
            eprintln!("warning: {p}");
        }
        match (self.errors.len(), self.problems.len()) {
            (0, 0) => ExitCode::SUCCESS,
            (0, n) => {
                eprintln!("herald: finished with {n} problem(s); everything else was done");
                ExitCode::FAILURE
            }
            (failed, n) => {
                eprintln!(
                    "herald: {failed} stage(s) failed and {n} other problem(s); the other stages ran"
                );
                ExitCode::FAILURE
            }
        }
    }
}

// ---------------------------------------------------------------------------
// init, check

fn init(dir: &Path, force: bool, base_url: Option<&crate::types::BaseUrl>) -> Result<ExitCode> {
    let written = crate::scaffold::write_site(dir, force, base_url)?;
    println!("Wrote {} files into {}:", written.len(), dir.display());
    for path in &written {
        println!("  {}", path.strip_prefix(dir).unwrap_or(path).display());
    }
    match base_url {
        Some(url) => println!("\nLinks in feeds and mails point at {url} (site.base_url in herald.toml)."),
        None => println!(
            "\nLinks in feeds and mails point at {} until you set site.base_url in herald.toml\n(or run init with --base-url URL); mail.from and mail.reply_to need your addresses too.",
            crate::scaffold::EXAMPLE_BASE_URL
        ),
    }
    let cd =
        if dir == Path::new(".") { String::new() } else { format!("cd {} && ", dir.display()) };
    println!("\nNext: {cd}herald run    (feeds go to public/, mail to outbox/)");
    Ok(ExitCode::SUCCESS)
}

async fn check(config_path: &Path, dns: bool, feeds: bool) -> Result<ExitCode> {
    let found = crate::check::check(config_path, dns, feeds).await;
    for note in &found.notes {
        println!("{note}");
    }
    for warning in &found.warnings {
        println!("warning: {warning}");
    }
    if found.problems.is_empty() {
        let config = found.config.map(|c| c.display().to_string()).unwrap_or_default();
        println!("{config}: no problems found");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &found.problems {
            println!("{p}");
        }
        eprintln!("herald check: {} problem(s)", found.problems.len());
        Ok(ExitCode::FAILURE)
    }
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
        let paused = store.paused_at(&edition.list).await?.is_some();
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
    let templates = load_templates(config);
    templates.require(templates::DIGEST).map_err(anyhow::Error::msg)?;
    let secret = Secret::resolve(store).await?;
    let digest = compose::Digest::load(config, store, templates, secret, &edition).await?;
    // Subscriber 0 is nobody: the links in a test message act on no one.
    let recipient = compose::Recipient {
        subscriber: 0,
        email: email.to_string(),
        name: None,
        token_key: "test".into(),
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
    let templates = load_templates(config);
    templates.require(templates::DIGEST).map_err(anyhow::Error::msg)?;
    let preview = match compose::preview(config, store, &templates, list, now).await? {
        Ok(preview) => preview,
        Err(why) => bail!("{} would get no edition now: {why}; nothing to preview", list.slug),
    };
    crate::fsutil::write_atomic(
        file,
        preview.html.as_bytes(),
        crate::fsutil::Durability::ProcessCrash,
    )
    .with_context(|| format!("cannot write {}", file.display()))?;
    let what = if preview.stored {
        "the stored edition"
    } else {
        "not stored: what compose would make now"
    };
    println!(
        "wrote {} ({what}, {} article(s), subject: {})",
        file.display(),
        preview.articles,
        preview.subject
    );
    Ok(ExitCode::SUCCESS)
}

/// `compose --dry-run`: what compose would do for each list now.
async fn compose_dry_run(config: &Config, store: &Store, now: DateTime<Utc>) -> Result<ExitCode> {
    for list in &config.lists {
        let date = now.with_timezone(&list.timezone).date_naive();
        let line = match compose::select(store, list, date).await? {
            compose::Selection::Exists(edition) => {
                format!("already has its edition ({} article(s))", edition.article_ids.len())
            }
            compose::Selection::New { articles, .. } => format!(
                "would hold {} article(s) for {} reader(s) (as of the last sync of the list file): {}",
                articles.len(),
                store.audience(list.slug.as_str()).await?,
                articles.iter().map(|a| a.article.title.as_str()).collect::<Vec<_>>().join(" | ")
            ),
            compose::Selection::None { why } => format!("no edition ({why})"),
        };
        println!("{} {date}: {line}", list.slug);
    }
    println!("nothing was stored (--dry-run)");
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

// ---------------------------------------------------------------------------
// articles

#[derive(Debug, Subcommand)]
pub enum ArticlesCommand {
    /// List published articles, newest first: SOURCE/SLUG, date, title, URL.
    List {
        /// Only this source's articles.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// Also articles taken down, with why and when (file deleted, draft, unpublished).
        #[arg(long)]
        all: bool,
    },
    /// Take an article down now: out of every feed, its page answers 410 Gone, never
    /// in a later edition. Works for upstream (feed) entries too, and no later collect
    /// brings it back; `republish` does.
    Unpublish {
        /// The article as `herald articles list` names it, e.g. blog/market-day.
        article: ArticleRef,
    },
    /// Undo `unpublish`. An article whose file is deleted or a draft stays down until
    /// its file is back.
    Republish {
        /// The article as `herald articles list` names it, e.g. blog/market-day.
        article: ArticleRef,
    },
}

async fn articles(
    config: &Config,
    store: &Store,
    action: &ArticlesCommand,
    clock: &deliver::Clock,
) -> Result<ExitCode> {
    let when = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let (article, marked) = match action {
        ArticlesCommand::List { source, all } => {
            let entries = store.article_entries(source.as_deref(), *all).await?;
            let mut out = String::new();
            for e in &entries {
                let name = format!("{}/{}", e.source, e.slug());
                let mut state = String::new();
                if let Some((reason, at)) = e.withdrawn {
                    let why = match reason {
                        Withdrawn::Deleted => "its file was deleted (or claims another slug)",
                        Withdrawn::Draft => "its file is a draft",
                    };
                    let _ = write!(state, "  [withdrawn {}: {why}]", when(at));
                }
                if let Some(at) = e.unpublished_at {
                    let _ = write!(state, "  [unpublished {} by an operator]", when(at));
                }
                let _ = writeln!(
                    out,
                    "{name:<40} {}  {}  {}{state}",
                    e.published.format("%Y-%m-%d"),
                    e.title,
                    e.url
                );
            }
            print!("{out}");
            eprintln!("{} article(s)", entries.len());
            return Ok(ExitCode::SUCCESS);
        }
        ArticlesCommand::Unpublish { article } => {
            (article, store.unpublish(article.source.as_str(), &article.slug, clock()).await?)
        }
        ArticlesCommand::Republish { article } => {
            (article, store.republish(article.source.as_str(), &article.slug).await?)
        }
    };
    let unpublish = matches!(action, ArticlesCommand::Unpublish { .. });
    match &marked {
        Marked::NotFound => bail!(
            "there is no article {article}; `herald articles list --all --source {}` lists that source's",
            article.source
        ),
        Marked::Unchanged(e) if unpublish => println!("{article} ({}) was already unpublished", e.title),
        Marked::Unchanged(e) => println!("{article} ({}) was not unpublished", e.title),
        Marked::Changed(e) if unpublish => println!("unpublished {article} ({})", e.title),
        Marked::Changed(e) => println!("republished {article} ({})", e.title),
    }
    if let Marked::Changed(ArticleEntry { withdrawn: Some((reason, _)), .. })
    | Marked::Unchanged(ArticleEntry { withdrawn: Some((reason, _)), .. }) = &marked
    {
        if !unpublish {
            println!(
                "it stays down while its file is {}; it comes back with its file",
                if *reason == Withdrawn::Draft { "a draft" } else { "gone" }
            );
        }
    }
    if !matches!(marked, Marked::Changed(_)) {
        return Ok(ExitCode::SUCCESS);
    }
    // Publish at once, as `herald publish` would; when another herald runs
    // the stages, the mark waits in the store for its next publish.
    if let Some(lease) = store.lease().await?.filter(|l| l.expires_at > Utc::now()) {
        println!("{lease} runs the stages; it publishes the change at its next collect");
        return Ok(ExitCode::SUCCESS);
    }
    let _lock = match RunLock::acquire(&config.root) {
        Ok(lock) => lock,
        Err(e) => {
            println!("{e:#}; the next publish shows the change");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let templates = load_templates(config);
    let pipeline = Pipeline { config, store, templates: &templates };
    let mut out = Report::default();
    out.add("published", config, pipeline.publish(clock()).await);
    Ok(out.finish())
}
