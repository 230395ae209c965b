//! The front page, `index.html` at the root of `output_dir`: the newest
//! articles, the three feeds (with `<link rel="alternate">` so browsers and
//! feed readers find them from the site's address), the edition archive and
//! a box that leads to the sign-up form. Rendered from `web/index.html`.

use std::path::Path;

use super::archive::render;
use super::{blocking, inside, write_file, PublishError};
use crate::config::Config;
use crate::fsutil::Durability;
use crate::store::Store;
use crate::templates::{article_context, site_context, Templates};

pub const FRONT_TEMPLATE: &str = "web/index.html";

/// Articles on the front page; the feeds and the archive hold the rest.
const FRONT_ARTICLES: usize = 20;

/// Writes `index.html`; whether its bytes changed.
pub(super) async fn write_front_page(
    config: &Config,
    store: &Store,
    templates: &Templates,
) -> Result<bool, PublishError> {
    let articles = store.latest_articles(FRONT_ARTICLES.min(config.feeds.items)).await?;
    let articles: Vec<_> = articles.iter().map(article_context).collect();
    let lists: Vec<_> = config
        .lists
        .iter()
        .filter(|l| l.public)
        .map(|l| serde_json::json!({ "slug": l.slug.as_str(), "name": l.name, "description": l.description }))
        .collect();
    let mut context = tera::Context::new();
    context.insert("site", &site_context(config));
    context.insert("articles", &articles);
    context.insert("lists", &lists);
    let html = render(templates, FRONT_TEMPLATE, &context, config.site.base_url.as_str())?;
    let path = inside(&config.feeds.output_dir, Path::new("index.html"), "the front page")?;
    blocking(|| write_file(&path, html.as_bytes(), Durability::ProcessCrash))
}
