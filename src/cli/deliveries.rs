//! `herald deliver --dry-run`, `deliver --test` and `herald deliveries`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::email::EmailAddress;
use crate::store::Store;
use crate::subscribe::Secret;
use crate::{deliver, templates};

use super::{list_slug, load_templates};

pub(super) async fn dry_run(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
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

pub(super) async fn send_test(
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
    let (outcome, transport) =
        deliver::send_test(config, store, templates, secret, &edition, &email, now).await?;
    match outcome {
        deliver::SendOutcome::Sent { reply } => {
            println!(
                "sent {list}'s edition of {} to {email} via {transport} ({reply}); the ledger is unchanged",
                edition.edition_date,
            );
            Ok(ExitCode::SUCCESS)
        }
        deliver::SendOutcome::Retry { error, .. } | deliver::SendOutcome::Failed { error, .. } => {
            bail!("could not send the test message to {email}: {error}")
        }
    }
}

pub(super) async fn deliveries(
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
