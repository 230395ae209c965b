//! Each page and mail template with a sample context of the shape its route
//! gives it, for `herald check`.

use serde_json::json;

use crate::compose::ConfirmationContext;
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
        ("confirm.html", confirm.clone()),
        ("confirm.txt", confirm),
    ]
}
