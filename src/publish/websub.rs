//! WebSub (W3C Recommendation): after a publish that changed a subscription
//! feed, herald tells `feeds.hub` so the hub fetches the feed and pushes it
//! to its subscribers. The `rel="hub"` links in the documents are written by
//! rss.rs, atom.rs and json.rs; this module only pings.
//!
//! WebSub's Publishing section leaves the publisher-to-hub call to the hub;
//! herald sends the form every public hub accepts (from PubSubHubbub 0.4):
//! one `POST` of `hub.mode=publish` with one `hub.url` per changed feed.
//!
//! A failed ping never fails the publish: the feed URLs wait in the store's
//! settings (`websub:pending`) and every later publish sends them again,
//! changed feeds or not, until the hub answers 2xx. It talks to no host but
//! the configured hub, follows no redirect, and never reads the clock.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{info, warn};
use url::{Host, Url};

use crate::store::Store;

/// The settings key of the feed URLs not yet announced, one per line.
pub const PENDING_KEY: &str = "websub:pending";

/// The whole exchange with the hub (connect, TLS, request, status line).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The most herald reads of the hub's answer before giving up on finding the
/// status line.
const MAX_STATUS_LINE: usize = 8 * 1024;

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
    let pending = match store.setting(PENDING_KEY).await {
        Ok(pending) => pending.unwrap_or_default(),
        Err(e) => return failed(hub, format!("cannot read the pending pings: {e}")),
    };
    // Sorted and without duplicates, so the same feeds give the same body.
    let topics: BTreeSet<&str> = pending
        .lines()
        .filter(|l| !l.is_empty())
        .chain(changed.iter().map(String::as_str))
        .collect();
    if topics.is_empty() {
        return Announced::default();
    }
    // Recorded before the ping, so a crash in between still retries it.
    let list = topics.iter().copied().collect::<Vec<_>>().join("\n");
    if list != pending {
        if let Err(e) = store.set_setting(PENDING_KEY, &list).await {
            return failed(hub, format!("cannot record the pending pings: {e}"));
        }
    }
    match ping(hub, &topics).await {
        Ok(status) => {
            info!(hub = %hub, status, feeds = topics.len(), "hub notified");
            if let Err(e) = store.delete_setting(PENDING_KEY).await {
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
async fn ping(hub: &Url, topics: &BTreeSet<&str>) -> Result<u16, String> {
    let body = form_body(topics.iter().copied());
    match tokio::time::timeout(TIMEOUT, post(hub, &body)).await {
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(status),
        Ok(Ok(status)) => Err(format!("the hub answered HTTP {status}")),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
    }
}

/// One HTTP/1.1 request over a fresh connection (TLS for https); the status
/// code of the answer.
async fn post(hub: &Url, body: &str) -> Result<u16, String> {
    let host = match hub.host() {
        Some(Host::Domain(name)) => name.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err("the hub URL has no host".to_owned()),
    };
    let port = hub.port_or_known_default().ok_or("the hub URL has no port")?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let request = request(hub, body);
    match hub.scheme() {
        "http" => exchange(tcp, &request).await,
        "https" => {
            let connector = crate::deliver::smtp::rustls_connector()
                .map_err(|e| format!("cannot set up TLS: {e}"))?;
            // SNI and certificate check against the hub's host name.
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}:{port} failed: {e}"))?;
            exchange(tls, &request).await
        }
        other => Err(format!("`{other}` is not an http(s) hub")),
    }
}

/// The request's bytes: the hub's path and query, `Host` as in the URL.
fn request(hub: &Url, body: &str) -> String {
    let target = &hub[url::Position::BeforePath..url::Position::AfterQuery];
    let target = if target.is_empty() { "/" } else { target };
    let host = &hub[url::Position::BeforeHost..url::Position::AfterPort];
    format!(
        "POST {target} HTTP/1.1\r\n\
         Host: {host}\r\n\
         User-Agent: {agent}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {length}\r\n\
         Connection: close\r\n\
         \r\n\
         {body}",
        agent = super::GENERATOR,
        length = body.len(),
    )
}

/// Sends `request` and reads up to the end of the status line.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
) -> Result<u16, String> {
    let io = |e: std::io::Error| format!("the exchange with the hub failed: {e}");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        if answer.len() > MAX_STATUS_LINE {
            return Err("the hub's answer has no HTTP status line".to_owned());
        }
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            if answer.is_empty() {
                return Err("the hub closed the connection without answering".to_owned());
            }
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    status(&String::from_utf8_lossy(line))
}

/// The code of an `HTTP/1.x NNN reason` status line.
fn status(line: &str) -> Result<u16, String> {
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    match code.parse::<u16>() {
        Ok(code) if version.starts_with("HTTP/1.") && (100..600).contains(&code) => Ok(code),
        _ => Err(format!("the hub's answer is not HTTP: `{}`", line.trim_end())),
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

    #[test]
    fn request_names_the_hub() {
        let hub = Url::parse("http://hub.example:8080/ping?x=1").unwrap();
        let r = request(&hub, "a=b");
        assert!(r.starts_with("POST /ping?x=1 HTTP/1.1\r\nHost: hub.example:8080\r\n"), "{r}");
        assert!(r.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\na=b"), "{r}");
        let r = request(&Url::parse("https://hub.example").unwrap(), "");
        assert!(r.starts_with("POST / HTTP/1.1\r\nHost: hub.example\r\n"), "{r}");
    }

    #[test]
    fn status_lines() {
        assert_eq!(status("HTTP/1.1 204 No Content\r"), Ok(204));
        assert_eq!(status("HTTP/1.0 500"), Ok(500));
        assert!(status("SSH-2.0-OpenSSH").is_err());
        assert!(status("HTTP/1.1 abc").is_err());
    }
}
