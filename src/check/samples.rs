//! Every template rendered once with sample data shaped like what its
//! route or stage gives it, so unknown variables and filters show up in
//! `herald check`, not when a reader meets them.

use chrono::Utc;

use crate::compose;
use crate::config::Config;
use crate::templates::{self, Templates};

/// Renders every template with samples: the problems found, and the
/// warnings (a digest whose HTML part nears Gmail's clip).
pub(super) fn render_samples(config: &Config, t: &Templates) -> (Vec<String>, Vec<String>) {
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
    let mut warnings = Vec::new();
    // A template that did not load is reported once, by `load`.
    let loaded = |name: &str| !t.broken.iter().any(|(broken, _)| *broken == name);
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
        compose::insert_sample_reader(&mut context, &config.site.base_url);
        let before = problems.len();
        for name in templates::DIGEST.iter().copied().filter(|n| loaded(n)) {
            if let Err(e) = t.tera.render(name, &context) {
                problems.push(format!(
                    "{}: rendering for list `{}`: {}",
                    config.site.templates_dir.join(name).display(),
                    list.slug,
                    crate::text::error_chain(&e)
                ));
            }
        }
        if !templates::DIGEST.iter().all(|n| loaded(n)) || problems.len() > before {
            continue;
        }
        // The mail as compose makes it: its CSS inlined, fitted to the cap.
        match compose::fit_mail(t, &mut context, list, &config.site.base_url) {
            Ok(fit) => warnings.extend(
                fit.notes(list.slug.as_str(), "with the sample article").into_iter().map(|note| {
                    format!("{}: {note}", config.site.templates_dir.join("digest.html").display())
                }),
            ),
            Err(e) => problems
                .push(format!("{}: {e}", config.site.templates_dir.join("digest.html").display())),
        }
    }
    // The welcome mail goes only with both of its templates.
    let (html, text) = compose::WELCOME;
    let on_disk = |name: &str| config.site.templates_dir.join(name).exists();
    if on_disk(html) != on_disk(text) {
        let (there, missing) = if on_disk(html) { (html, text) } else { (text, html) };
        problems.push(format!(
            "{}: there is no {missing} beside it, so no welcome mail is sent (add it, or remove {there})",
            config.site.templates_dir.join(there).display(),
        ));
    }
    // An optional template the site does not have is not rendered.
    for (name, sample) in
        crate::web::signup::samples(config).into_iter().filter(|(n, _)| loaded(n) && t.has(n))
    {
        let rendered =
            tera::Context::from_value(sample).and_then(|context| t.tera.render(name, &context));
        if let Err(e) = rendered {
            problems.push(format!(
                "{}: {}",
                config.site.templates_dir.join(name).display(),
                crate::text::error_chain(&e)
            ));
        }
    }
    let mut context = tera::Context::new();
    context.insert("site", &templates::site_context(config));
    context.insert("article", &templates::article_context(&sample));
    let rendered = if loaded("web/article.html") {
        t.tera.render("web/article.html", &context).map(drop)
    } else {
        Ok(())
    };
    if let Err(e) = rendered {
        problems.push(format!(
            "{}: {}",
            config.site.templates_dir.join("web/article.html").display(),
            crate::text::error_chain(&e)
        ));
    }
    (problems, warnings)
}
