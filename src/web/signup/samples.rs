//! Each page and mail template with a sample context of the shape its route
//! gives it, for `herald check`.

use serde_json::json;

use crate::compose::{ConfirmationContext, ManageContext, WelcomeContext, WelcomeList};
use crate::config::Config;

/// Each page and mail template with a context of the shape its route gives
/// it, so `herald check` can render them before a reader meets an error.
pub fn samples(config: &Config) -> Vec<(&'static str, serde_json::Value)> {
    let site = crate::templates::site_context(config);
    let base = config.site.base_url.to_string();
    let list = json!({
        "slug": "daily",
        "name": "A list",
        "description": "What it brings.",
        "checked": true,
    });
    let csrf = "0".repeat(32);
    let email = "reader@example.com";
    let confirm_url = format!("{base}confirm?token=sample");
    // The confirmation mail's context has one type, for the mail and here.
    let confirm = serde_json::to_value(ConfirmationContext {
        site: &site,
        email,
        name: Some("Sample Reader"),
        lists: vec!["A list"],
        confirm_url: &confirm_url,
        expiry_days: 7,
    })
    .unwrap_or_default();
    let preferences_url = format!("{base}preferences?token=sample");
    let manage = serde_json::to_value(ManageContext {
        site: &site,
        email,
        preferences_url: &preferences_url,
    })
    .unwrap_or_default();
    let archive_url = format!("{base}archive/");
    let welcome = serde_json::to_value(WelcomeContext {
        site: &site,
        email,
        name: Some("Sample Reader"),
        lists: vec![
            WelcomeList {
                slug: "daily",
                name: "A list",
                description: "What it brings.",
                latest_edition_url: Some(format!("{base}archive/daily/2026-11-20/")),
                unsubscribe_url: format!("{base}unsubscribe?token=sample"),
            },
            WelcomeList {
                slug: "new",
                name: "A list with no edition yet",
                description: "",
                latest_edition_url: None,
                unsubscribe_url: format!("{base}unsubscribe?token=sample2"),
            },
        ],
        preferences_url: &preferences_url,
        archive_url: &archive_url,
    })
    .unwrap_or_default();
    vec![
        (
            "web/subscribe.html",
            json!({
                "site": site, "csrf": csrf, "lists": [list], "error": "A problem.",
                "email": email, "name": "Sample Reader",
            }),
        ),
        (
            "web/notice.html",
            json!({
                "site": site, "heading": "A heading", "paragraphs": ["Some text."],
                "preferences_url": format!("{base}preferences?token=sample"),
                "subscribe_url": format!("{base}subscribe"),
            }),
        ),
        (
            "web/confirm.html",
            json!({
                "site": site, "email": email, "lists": "A list",
                "action": "confirm?token=sample",
            }),
        ),
        (
            "web/unsubscribe.html",
            json!({
                "site": site, "list": { "slug": "daily", "name": "A list" }, "email": email,
                "action": "unsubscribe?token=sample",
            }),
        ),
        (
            "web/preferences.html",
            json!({
                "site": site, "email": email, "lists": [list], "csrf": csrf,
                "zones": { "chosen": "Europe/Lisbon", "names": ["America/New_York", "Europe/Lisbon"] },
                "action": "preferences?token=sample", "saved": true,
            }),
        ),
        (
            "web/manage.html",
            json!({ "site": site, "csrf": csrf, "error": "A problem.", "email": email }),
        ),
        ("confirm.html", confirm.clone()),
        ("confirm.txt", confirm),
        ("manage.html", manage.clone()),
        ("manage.txt", manage),
        // Rendered only when the site has them.
        ("welcome.html", welcome.clone()),
        ("welcome.txt", welcome),
    ]
}
