//! `herald check`: what can be known to be wrong before a reader meets it —
//! the configuration, the templates (parsed, then rendered with samples),
//! the Markdown files of each `dir` source, the member files and the DKIM
//! key; with `--feeds`, the published feeds as validators read them
//! (`feeds.rs`); with `--dns`, the sending domain's records (`dns.rs`). It
//! changes nothing and never goes online but for `--dns`.

pub mod dns;
pub mod feeds;
mod samples;

use std::path::{Path, PathBuf};

use crate::config::{self, Config, SourceKind};

/// What `herald check` found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Wrong: the command exits 1. Each says where (file:line, variable).
    pub problems: Vec<String>,
    /// Allowed, but most likely not what the operator wants.
    pub warnings: Vec<String>,
    /// What was checked and is fine, or why a check was skipped.
    pub notes: Vec<String>,
    /// The configuration file, when it could be read.
    pub config: Option<PathBuf>,
}

/// Checks the site of the configuration at `path`.
pub async fn check(path: &Path, dns: bool, feeds: bool) -> Findings {
    let mut found = Findings::default();
    let config = match config::load(path) {
        Ok(config) => config,
        Err(e) => {
            found.problems.extend(e.problems());
            return found;
        }
    };
    found.config = Some(config.path.clone());
    let (problems, sample_warnings) = site(&config);
    found.problems.extend(problems);
    found.warnings.extend(sample_warnings);
    found.warnings.extend(warnings(&config));
    if feeds {
        found.problems.extend(feeds::check_feeds(
            &config.feeds.output_dir,
            &config.site.base_url,
            config.feeds.hub.as_ref(),
        ));
    }
    if dns {
        let (problems, notes) = dns::check_dns(&config).await;
        found.problems.extend(problems);
        found.notes.extend(notes);
    }
    found
}

/// The templates, sources, DKIM key and member files of a loaded config:
/// the problems found, and the warnings from rendering the samples.
fn site(config: &Config) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    if !config.site.templates_dir.is_dir() {
        problems.push(format!(
            "{}: site.templates_dir {} does not exist, so every template falls back to the built-in one; fix the path, or write the templates there with `herald init --force` in a copy of the site",
            config.path.display(),
            config.site.templates_dir.display()
        ));
    }
    let templates = crate::templates::load(&config.site.templates_dir);
    problems.extend(templates.broken.iter().map(|(_, e)| e.to_string()));
    let (sample_problems, warnings) = samples::render_samples(config, &templates);
    problems.extend(sample_problems);
    for source in &config.sources {
        match &source.kind {
            SourceKind::Dir { path } => match crate::collect::dir::read_dir_source(
                source.name.as_str(),
                path,
                &source.tags,
                &config.site.base_url,
            ) {
                Ok((_, file_problems)) => {
                    problems.extend(file_problems.iter().map(ToString::to_string))
                }
                Err(e) => problems.push(format!("source `{}`: {e}", source.name)),
            },
            // Checked when collected: `herald check` does not go online.
            SourceKind::Feed { .. } => {}
        }
    }
    if let Err(e) = crate::compose::load_dkim(&config.mail.dkim) {
        problems.push(e.to_string());
    }
    for list in config.lists.iter().filter(|l| l.subscribers.exists()) {
        match crate::subscribe::csv::read_csv(&list.subscribers) {
            Ok((_, _, rows)) => problems.extend(rows.iter().map(ToString::to_string)),
            Err(p) => problems.push(p.to_string()),
        }
    }
    (problems, warnings)
}

/// Settings that are allowed but most likely not what the operator wants.
fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let public: Vec<&str> =
        config.lists.iter().filter(|l| l.public).map(|l| l.slug.as_str()).collect();
    if config.site.postal_address.is_none() && !public.is_empty() {
        warnings.push(format!(
            "{}: site.postal_address is not set, and anyone can sign up to {}: commercial mail must carry the sender's postal address (CAN-SPAM); set it and every digest's footer shows it",
            config.path.display(),
            public.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(imap) = &config.bounces.imap {
        warnings.extend(
            config::imap::warnings(imap)
                .into_iter()
                .map(|w| format!("{}: {w}", config.path.display())),
        );
    }
    warnings
}
