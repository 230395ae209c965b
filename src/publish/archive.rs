//! The public archive of editions: `archive/index.html` lists every edition
//! newest first, and `archive/{list}/{date}/index.html` shows each one's
//! web copy (the HTML composed without a subscriber, stored with the
//! edition). Rendered from `web/archive.html` and `web/edition.html`.
//! Never writes outside `output_dir`; reads the store, never changes it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::debug;

use super::{blocking, inside, write_file, PublishError};
use crate::compose;
use crate::config::Config;
use crate::fsutil::Durability;
use crate::store::Edition;
use crate::store::Store;
use crate::templates::{site_context, Templates};
use crate::text::error_chain;
use crate::types::Slug;

pub const ARCHIVE_TEMPLATE: &str = "web/archive.html";
pub const EDITION_TEMPLATE: &str = "web/edition.html";

/// The edition archive's index, relative to `output_dir` and `base_url`.
pub const ARCHIVE_INDEX: &str = "archive/index.html";

#[derive(Debug, Default)]
pub(super) struct ArchiveCounts {
    pub written: usize,
    pub unchanged: usize,
}

/// One edition as the templates see it.
#[derive(Debug, Serialize)]
struct EditionContext {
    /// The list's slug.
    list: String,
    /// The list's name from the configuration (its slug for a list since
    /// removed from it).
    list_name: String,
    /// YYYY-MM-DD.
    date: String,
    subject: String,
    /// The absolute URL of the edition's page.
    url: String,
    /// How many of its articles were taken down since; the page no longer
    /// shows them.
    withdrawn: usize,
}

/// Writes the page of every edition, then the index. An edition holding
/// articles taken down since (`retracted`) is rendered again from
/// `digest.html` with the articles still published, so herald no longer
/// serves their text; the stored copy is left as it was (it is what went
/// out by mail), and is shown again should they come back.
pub(super) async fn write_archive(
    config: &Config,
    store: &Store,
    templates: &Templates,
    retracted: &HashSet<i64>,
) -> Result<ArchiveCounts, PublishError> {
    let site = site_context(config);
    let archive_url = config.site.base_url.join(ARCHIVE_INDEX).to_string();
    let mut counts = ArchiveCounts::default();
    let mut listed = Vec::new();
    for id in store.edition_ids_newest_first().await? {
        let edition = store.edition_by_id(id).await?;
        let (relative, path) = edition_path(&config.feeds.output_dir, &edition)?;
        let withdrawn = edition.article_ids.iter().filter(|id| retracted.contains(id)).count();
        let context = EditionContext {
            list: edition.list.clone(),
            list_name: config
                .lists
                .iter()
                .find(|l| l.slug.as_str() == edition.list)
                .map_or_else(|| edition.list.clone(), |l| l.name.clone()),
            date: edition.edition_date.format("%Y-%m-%d").to_string(),
            subject: edition.subject.clone(),
            url: config.site.base_url.join(&relative).to_string(),
            withdrawn,
        };
        let rendered;
        let body_html = if withdrawn == 0 {
            body(&edition.html)
        } else {
            rendered = without_retracted(config, store, templates, &edition, retracted).await?;
            body(&rendered)
        };
        let mut tera = tera::Context::new();
        tera.insert("site", &site);
        tera.insert("edition", &context);
        tera.insert("body_html", body_html);
        tera.insert("archive_url", &archive_url);
        let html = render(templates, EDITION_TEMPLATE, &tera, &context.url)?;
        count(
            &mut counts,
            blocking(|| write_file(&path, html.as_bytes(), Durability::ProcessCrash))?,
        );
        debug!(path = %path.display(), "edition page");
        listed.push(context);
    }

    let mut tera = tera::Context::new();
    tera.insert("site", &site);
    tera.insert("editions", &listed);
    tera.insert("archive_url", &archive_url);
    let html = render(templates, ARCHIVE_TEMPLATE, &tera, &archive_url)?;
    let path = inside(&config.feeds.output_dir, Path::new(ARCHIVE_INDEX), "the edition archive")?;
    count(&mut counts, blocking(|| write_file(&path, html.as_bytes(), Durability::ProcessCrash))?);
    Ok(counts)
}

/// The web copy of `edition` rendered again without its retracted
/// articles. A list since removed from the configuration cannot be
/// rendered; its page then says only that articles were withdrawn.
async fn without_retracted(
    config: &Config,
    store: &Store,
    templates: &Templates,
    edition: &Edition,
    retracted: &HashSet<i64>,
) -> Result<String, PublishError> {
    let Some(list) = config.list(&edition.list) else { return Ok(String::new()) };
    let ids: Vec<i64> =
        edition.article_ids.iter().copied().filter(|id| !retracted.contains(id)).collect();
    let articles = store.articles_by_ids(&ids).await?;
    let context = compose::digest_context(config, list, edition.edition_date, &articles);
    let (html, _) = compose::render_web_copy(templates, context, &edition.subject, &edition.list)
        .map_err(|e| PublishError::Render {
        url: config
            .site
            .base_url
            .join(&format!("archive/{}/{}/", edition.list, edition.edition_date))
            .to_string(),
        template: "digest.html".into(),
        message: e.to_string(),
    })?;
    Ok(html)
}

fn count(counts: &mut ArchiveCounts, written: bool) {
    if written {
        counts.written += 1;
    } else {
        counts.unchanged += 1;
    }
}

pub(super) fn render(
    templates: &Templates,
    name: &str,
    context: &tera::Context,
    url: &str,
) -> Result<String, PublishError> {
    templates.tera.render(name, context).map_err(|e| PublishError::Render {
        url: url.to_owned(),
        template: name.to_owned(),
        message: error_chain(&e),
    })
}

/// `archive/{list}/{date}/index.html`, relative and under `output_dir`. The
/// list is checked as a slug again: a path built from stored text must
/// never climb out of `output_dir`.
fn edition_path(output_dir: &Path, edition: &Edition) -> Result<(String, PathBuf), PublishError> {
    let what = format!("the edition {} of {}", edition.edition_date, edition.list);
    let list = Slug::parse(&edition.list).map_err(|e| PublishError::OutsideOutput {
        what: what.clone(),
        output_dir: output_dir.to_owned(),
        reason: format!("list name: {e}"),
    })?;
    let relative = format!("archive/{list}/{}/", edition.edition_date.format("%Y-%m-%d"));
    let path = inside(output_dir, &Path::new(&relative).join("index.html"), &what)?;
    Ok((relative, path))
}

/// What lies between `<body …>` and `</body>` of the stored web copy (a
/// whole document, rendered from `digest.html`), so the edition page can
/// wrap it in its own; the whole text when it has no body element.
fn body(html: &str) -> &str {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<body").and_then(|i| lower[i..].find('>').map(|j| i + j + 1));
    let end = lower.rfind("</body");
    match (start, end) {
        (Some(start), Some(end)) if start <= end => html[start..end].trim(),
        _ => html.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_cut_out_of_a_whole_document() {
        let doc = "<!doctype html><html><head><title>x</title></head>\n<BODY style=\"a\">\n<p>Hi</p>\n</Body></html>";
        assert_eq!(body(doc), "<p>Hi</p>");
        assert_eq!(body(" <p>fragment</p> "), "<p>fragment</p>");
        assert_eq!(body("<body><p>unclosed"), "<body><p>unclosed");
    }
}
