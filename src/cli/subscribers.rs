//! `herald subscribers …`: list, add, remove, import, forget, export.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;

use crate::collect::Problem;
use crate::config::Config;
use crate::email::{clean_display_name, EmailAddress};
use crate::store::{AddOutcome, Origin, Store};
use crate::subscribe;

use super::list_slug;

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
        /// The reader's time zone (an IANA name like America/New_York): lists
        /// with local_time = true reach them at the list's hour on their clock.
        #[arg(long, value_name = "ZONE", value_parser = parse_zone)]
        timezone: Option<chrono_tz::Tz>,
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
    /// Set (or with `none`, clear) a reader's time zone, for the lists sent at
    /// each reader's own hour (`local_time = true`).
    Timezone {
        /// The reader's address.
        email: String,
        /// An IANA time zone name like Europe/Lisbon, or `none`.
        zone: String,
    },
    /// Lift the suppression of an address (after bounces or a complaint), so
    /// it gets mail again; its bounce counts start over. A reader a complaint
    /// unsubscribed stays unsubscribed until they sign up again.
    Unsuppress {
        /// The address.
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

pub(super) async fn subscribers(
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
        SubscribersCommand::Add { email, name, list, timezone } => {
            let list = list_slug(config, list)?;
            let email = EmailAddress::parse(email)?;
            let row = (email.clone(), name.as_deref().and_then(clean_display_name));
            let zones: Vec<_> = timezone.iter().map(|tz| (email.clone(), *tz)).collect();
            let (_, outcomes) =
                subscribe::import_rows(store, list, &[row], &zones, Origin::Cli, now).await?;
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
            let (rows, zones, problems) =
                subscribe::csv::read_csv(file).map_err(|p| anyhow::anyhow!("{p}"))?;
            let (counts, _) =
                subscribe::import_rows(store, list, &rows, &zones, Origin::Csv, now).await?;
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
        SubscribersCommand::Timezone { email, zone } => {
            let email = EmailAddress::parse(email)?;
            let zone = match zone.trim() {
                "none" | "" => None,
                text => Some(parse_zone(text).map_err(|e| anyhow::anyhow!(e))?),
            };
            if store.subscriber_id(&email).await?.is_none() {
                bail!("{email} is not a subscriber");
            }
            store.set_time_zones(&[(email.as_str(), zone.as_ref().map(|z| z.name()))]).await?;
            match zone {
                Some(zone) => println!("{email} reads at {zone} time"),
                None => println!("{email} reads at each list's time zone"),
            }
            Ok(ExitCode::SUCCESS)
        }
        SubscribersCommand::Unsuppress { email } => {
            let email = EmailAddress::parse(email)?;
            if store.unsuppress(email.as_str(), now).await? {
                tracing::info!(email = %email, "suppression lifted from the command line");
                println!("{email} is no longer suppressed; its bounce counts start over");
            } else {
                println!("{email} was not suppressed");
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

/// An IANA time zone name, for `--timezone`.
fn parse_zone(text: &str) -> Result<chrono_tz::Tz, String> {
    text.parse::<chrono_tz::Tz>().map_err(|_| {
        format!(
            "`{text}` is not an IANA time zone name like \"America/New_York\" or \"Europe/Lisbon\""
        )
    })
}
