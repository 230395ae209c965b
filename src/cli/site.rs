//! `herald init`, `check` and `compose --preview` / `--dry-run`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::store::Store;
use crate::{compose, templates};

use super::{list_slug, load_templates};

pub(super) fn init(
    dir: &Path,
    force: bool,
    base_url: Option<&crate::types::BaseUrl>,
) -> Result<ExitCode> {
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

pub(super) async fn check(config_path: &Path, dns: bool, feeds: bool) -> Result<ExitCode> {
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

pub(super) async fn preview(
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
pub(super) async fn compose_dry_run(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
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
