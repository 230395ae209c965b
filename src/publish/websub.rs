//! WebSub (W3C Recommendation): after a publish that changed a subscription
//! feed, herald tells `feeds.hub` so the hub fetches the feed and pushes it
//! to its subscribers. The `rel="hub"` links in the documents are written by
//! rss.rs, atom.rs and json.rs; this module only pings.
//!
//! WebSub's Publishing section leaves the publisher-to-hub call to the hub;
//! herald sends the form every public hub accepts (from PubSubHubbub 0.4):
//! one `POST` of `hub.mode=publish` with one `hub.url` per changed feed.
//!
//! A failed ping never fails the publish: the feed URLs wait in the store
//! (`websub_pending`) and every later publish sends them again,
//! changed feeds or not, until the hub answers 2xx. It talks to no host but
//! the configured hub, follows no redirect, and never reads the clock.

use std::time::Duration;

use tracing::{info, warn};
use url::Url;

use crate::store::Store;

/// The whole exchange with the hub (connect, TLS, request, answer).
const TIMEOUT: Duration = Duration::from_secs(10);

/// What announcing came to: feeds the hub accepted, or why it did not.
#[derive(Debug, Default)]
pub(super) struct Announced {
    pub pinged: usize,
    pub error: Option<String>,
}

/// Announces `changed` (absolute feed URLs) and any still pending from an
/// earlier run to `hub`. Every outcome is logged; nothing is returned as an
/// error, since the hub is never a reason for the publish to fail.
pub(super) async fn announce(hub: &Url, store: &Store, changed: &[String]) -> Announced {
    // Recorded before the ping, so a crash in between still retries it.
    if let Err(e) = store.add_websub_pending(changed).await {
        return failed(hub, format!("cannot record the pending pings: {e}"));
    }
    // Sorted and without duplicates, so the same feeds give the same body.
    let topics: Vec<String> = match store.websub_pending().await {
        Ok(topics) => topics,
        Err(e) => return failed(hub, format!("cannot read the pending pings: {e}")),
    };
    if topics.is_empty() {
        return Announced::default();
    }
    match ping(hub, topics.iter().map(String::as_str)).await {
        Ok(status) => {
            info!(hub = %hub, status, feeds = topics.len(), "hub notified");
            if let Err(e) = store.clear_websub_pending(&topics).await {
                // The hub has them; the next run pings again, which is harmless.
                warn!(hub = %hub, error = %e, "cannot clear the pending hub pings");
            }
            Announced { pinged: topics.len(), error: None }
        }
        Err(reason) => failed(hub, reason),
    }
}

fn failed(hub: &Url, reason: String) -> Announced {
    warn!(hub = %hub, reason = %reason, "WebSub hub not notified; the next publish tries again");
    Announced { pinged: 0, error: Some(format!("hub {hub}: {reason}")) }
}

/// `hub.mode=publish&hub.url=…&hub.url=…`, form-encoded.
fn form_body<'a>(topics: impl IntoIterator<Item = &'a str>) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("hub.mode", "publish");
    for topic in topics {
        form.append_pair("hub.url", topic);
    }
    form.finish()
}

/// POSTs the publish notification; the hub's status code if 2xx.
async fn ping<'a>(hub: &Url, topics: impl IntoIterator<Item = &'a str>) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .user_agent(super::GENERATOR)
        .timeout(TIMEOUT)
        // The hub is the configured URL: a redirect elsewhere is not followed.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let sent = client
        .post(hub.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_body(topics))
        .send()
        .await;
    match sent {
        Ok(answer) if answer.status().is_success() => Ok(answer.status().as_u16()),
        Ok(answer) => Err(format!("the hub answered HTTP {}", answer.status().as_u16())),
        Err(e) if e.is_timeout() => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
        Err(e) => {
            Err(format!("the exchange with the hub failed: {}", crate::text::error_chain(&e)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_repeats_hub_url_form_encoded() {
        assert_eq!(
            form_body(["https://a.example/feed.xml", "https://a.example/tags/c++/feed.json"]),
            "hub.mode=publish&hub.url=https%3A%2F%2Fa.example%2Ffeed.xml\
             &hub.url=https%3A%2F%2Fa.example%2Ftags%2Fc%2B%2B%2Ffeed.json"
        );
    }
}
