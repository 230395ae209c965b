//! `herald articles …`: list, unpublish, republish.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;

use crate::config::Config;
use crate::deliver;
use crate::pipeline::Pipeline;
use crate::store::{ArticleEntry, Marked, Store, Withdrawn};
use crate::types::ArticleRef;

use super::{load_templates, RunLock};

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

pub(super) async fn articles(
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
    let mut out = super::stages::Report::default();
    out.add("published", config, pipeline.publish(clock()).await);
    Ok(out.finish())
}
