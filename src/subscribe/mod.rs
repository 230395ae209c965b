//! Memberships: one subscribe path for CSV files, the CLI (and the web form
//! later), signed unsubscribe tokens, and CSV export. Operators' imports are
//! confirmed at once; an address that unsubscribed or is suppressed is never
//! subscribed again by an import.

pub mod csv;
pub mod token;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::collect::Problem;
use crate::config::Config;
use crate::store::{AddOutcome, ImportCounts, MembershipStatus, Origin, Store, StoreError};

pub use token::{unsubscribe_token, Action, Bearer, Claims, Secret, TokenError};

#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Per list file read: (list slug, counts).
    pub imported: Vec<(String, ImportCounts)>,
    /// Files unchanged since the last sync, not read again.
    pub unchanged: usize,
    pub problems: Vec<Problem>,
}

/// Imports rows into `list` as confirmed members (the operator vouches for
/// them). Returns the counts and one outcome per row.
pub async fn import_rows(
    store: &Store,
    list: &str,
    rows: &[csv::Row],
    zones: &[csv::Zone],
    origin: Origin,
    now: DateTime<Utc>,
) -> Result<(ImportCounts, Vec<AddOutcome>), StoreError> {
    let added = store.add_members(list, rows, origin, MembershipStatus::Confirmed, now).await?;
    let zones: Vec<(&str, Option<&str>)> =
        zones.iter().map(|(email, tz)| (email.as_str(), Some(tz.name()))).collect();
    store.set_time_zones(&zones).await?;
    Ok(added)
}

/// Syncs each list's CSV file (`[[lists]] subscribers`, by default
/// `subscribers/<slug>.csv`) into the store. A file that has not changed
/// since it was last read without problems is skipped.
pub async fn sync_list_files(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<SyncReport, StoreError> {
    let mut report = SyncReport::default();
    // A CSV file in subscribers/ that no list reads is most likely a list
    // whose [[lists]] entry is missing or misspelt: say so.
    let folder = config.root.join("subscribers");
    if let Ok(entries) = std::fs::read_dir(&folder) {
        let mut orphans: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .filter(|p| !config.lists.iter().any(|l| &l.subscribers == p))
            .collect();
        orphans.sort();
        for path in orphans {
            let stem =
                path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            report.problems.push(Problem::new(
                &path,
                None,
                format!("no [[lists]] entry reads this file (add one with slug = \"{stem}\", or move the file away); not imported"),
            ));
        }
    }
    for list in &config.lists {
        let path = &list.subscribers;
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                report.problems.push(Problem::new(path, None, format!("cannot read: {e}")));
                continue;
            }
        };
        let hash = hex::encode(Sha256::digest(&bytes));
        let key = format!("list-file:{}:{}", list.slug, path.display());
        if store.setting(&key).await?.as_deref() == Some(hash.as_str()) {
            report.unchanged += 1;
            continue;
        }
        let (rows, zones, problems) = match csv::read_csv_bytes(path, &bytes) {
            Ok(read) => read,
            Err(problem) => {
                report.problems.push(problem);
                continue;
            }
        };
        let (counts, _) =
            import_rows(store, list.slug.as_str(), &rows, &zones, Origin::Csv, now).await?;
        tracing::info!(
            list = %list.slug,
            file = %path.display(),
            added = counts.added,
            refused = counts.refused_unsubscribed + counts.refused_suppressed,
            "synced subscribers"
        );
        // Remember the file only when it was read cleanly, so a bad row is
        // reported again on every run until it is fixed.
        if problems.is_empty() {
            store.set_setting(&key, &hash).await?;
        }
        report.problems.extend(problems);
        report.imported.push((list.slug.to_string(), counts));
    }
    Ok(report)
}

/// The members of `list` as CSV: `email,name` for confirmed members, or with
/// `all`, every member with `status,origin,subscribed_at,changed_at` columns.
/// Cells a spreadsheet would run as formulas get a `'` first
/// ([`csv::neutralise`]); importing the file takes it off again.
pub async fn export_csv(store: &Store, list: &str, all: bool) -> Result<String, StoreError> {
    let members = store.members(Some(list)).await?;
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    let result: Result<(), ::csv::Error> = (|| {
        if all {
            writer.write_record([
                "email",
                "name",
                "status",
                "origin",
                "subscribed_at",
                "changed_at",
            ])?;
        } else {
            writer.write_record(["email", "name"])?;
        }
        for m in &members {
            let email = csv::neutralise(&m.email);
            let name = csv::neutralise(m.name.as_deref().unwrap_or(""));
            if all {
                writer.write_record([
                    &*email,
                    &*name,
                    m.status.as_str(),
                    &m.origin,
                    &m.created.to_rfc3339(),
                    &m.changed_at.to_rfc3339(),
                ])?;
            } else if m.status == MembershipStatus::Confirmed {
                writer.write_record([&*email, &*name])?;
            }
        }
        Ok(())
    })();
    // Writing CSV into memory cannot fail on I/O; a failure here is a bug.
    result.map_err(|e| StoreError::Corrupt(format!("cannot write CSV: {e}")))?;
    let bytes =
        writer.into_inner().map_err(|e| StoreError::Corrupt(format!("cannot write CSV: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
