//! Fetching upstream feeds over HTTP(S), politely and safely: conditional
//! GET (ETag, Last-Modified), connect and total timeouts, a body cap counted
//! while streaming (after decompression), at most `max_redirects` redirects
//! followed by hand so each hop is checked, and a guard that refuses hosts
//! resolving to loopback, private, link-local or multicast addresses unless
//! the source allows them.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{
    ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION, RETRY_AFTER,
};
use reqwest::StatusCode;
use url::Url;

use crate::config::Collect;

/// What a fetch came to.
#[derive(Debug)]
pub enum Fetched {
    /// 304: nothing changed since the validators were stored.
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
        /// Where the feed now lives, when every redirect on the way was
        /// permanent (301 or 308).
        moved_to: Option<Url>,
    },
    /// 410: the feed is gone for good.
    Gone,
    /// 429 or 503: come back after this many seconds.
    RetryAfter { seconds: u64, status: u16 },
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Refused(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Network(String),
    #[error("the body is over the {0}-byte cap (collect.max_body_bytes)")]
    TooLarge(u64),
    #[error("more than {0} redirects (collect.max_redirects)")]
    TooManyRedirects(usize),
    #[error("a redirect without a usable Location")]
    BadRedirect,
}

pub struct Fetcher {
    /// Connects only to public addresses: its resolver refuses names that
    /// resolve inside this network, checked on the addresses it connects to
    /// (so a name cannot pass a check and then rebind to 127.0.0.1).
    public: reqwest::Client,
    /// For sources with `allow_private = true`.
    any: reqwest::Client,
    max_body: u64,
    max_redirects: usize,
}

impl Fetcher {
    pub fn new(limits: &Collect, user_agent: &str) -> Result<Self, String> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(user_agent)
                .connect_timeout(Duration::from_secs(limits.connect_timeout_secs))
                .timeout(Duration::from_secs(limits.timeout_secs))
                .redirect(reqwest::redirect::Policy::none())
        };
        let built = |b: reqwest::ClientBuilder| {
            b.build().map_err(|e| format!("cannot set up the HTTP client: {e}"))
        };
        Ok(Self {
            public: built(builder().dns_resolver(std::sync::Arc::new(PublicOnly)))?,
            any: built(builder())?,
            max_body: limits.max_body_bytes,
            max_redirects: limits.max_redirects,
        })
    }

    /// Fetches `url`, sending the stored validators.
    pub async fn fetch(
        &self,
        url: &Url,
        allow_private: bool,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        let mut current = url.clone();
        let mut permanent = true;
        for _ in 0..=self.max_redirects {
            let client = if allow_private {
                &self.any
            } else {
                refuse_private_literal(&current)?;
                &self.public
            };
            let mut request = client.get(current.clone());
            if let Some(etag) = etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = last_modified {
                request = request.header(IF_MODIFIED_SINCE, lm);
            }
            let mut response =
                request.send().await.map_err(|e| FetchError::Network(describe(&e)))?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok());
                let next =
                    location.and_then(|l| current.join(l).ok()).ok_or(FetchError::BadRedirect)?;
                if next.scheme() != "http" && next.scheme() != "https" {
                    return Err(FetchError::BadRedirect);
                }
                // Only 301 and 308 say the feed moved for good (RFC 9110 15.4).
                permanent &= matches!(
                    status,
                    StatusCode::MOVED_PERMANENTLY | StatusCode::PERMANENT_REDIRECT
                );
                current = next;
                continue;
            }
            return match status {
                StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified),
                StatusCode::GONE => Ok(Fetched::Gone),
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    let seconds = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(retry_after_seconds)
                        .unwrap_or(300);
                    Ok(Fetched::RetryAfter { seconds, status: status.as_u16() })
                }
                s if s.is_success() => {
                    let header = |name| {
                        response
                            .headers()
                            .get(name)
                            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
                    if response.content_length().is_some_and(|n| n > self.max_body) {
                        return Err(FetchError::TooLarge(self.max_body));
                    }
                    let mut bytes = Vec::new();
                    while let Some(chunk) =
                        response.chunk().await.map_err(|e| FetchError::Network(describe(&e)))?
                    {
                        if bytes.len() as u64 + chunk.len() as u64 > self.max_body {
                            return Err(FetchError::TooLarge(self.max_body));
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    let moved_to = (permanent && current != *url).then_some(current);
                    Ok(Fetched::Body { bytes, etag, last_modified, moved_to })
                }
                other => Err(FetchError::Status(other.as_u16())),
            };
        }
        Err(FetchError::TooManyRedirects(self.max_redirects))
    }
}

/// The error and its causes in one line (reqwest's own message alone says
/// little: "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let text = crate::text::error_chain(e);
    if e.is_timeout() {
        format!("timed out: {text}")
    } else {
        text
    }
}

/// Retry-After as seconds: a number, or an HTTP date.
fn retry_after_seconds(value: &str) -> Option<u64> {
    value.trim().parse::<u64>().ok().or_else(|| {
        let at = httpdate::parse_http_date(value.trim()).ok()?;
        Some(at.duration_since(std::time::SystemTime::now()).map(|d| d.as_secs()).unwrap_or(0))
    })
}

/// The resolver of the public client: a name that resolves to any address
/// inside this network is refused (SSRF).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(inside) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(refusal(&host, inside.ip()).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A URL whose host is an IP address is not resolved, so the resolver never
/// sees it: check it here.
fn refuse_private_literal(url: &Url) -> Result<(), FetchError> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(FetchError::Refused(format!("{url} has no host"))),
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(FetchError::Refused(refusal(&ip.to_string(), ip)))
    }
}

fn refusal(host: &str, ip: IpAddr) -> String {
    let what = if host == ip.to_string() { host.to_owned() } else { format!("{host} is {ip},") };
    format!(
        "{what} an address inside this network; set allow_private = true on the source to fetch it anyway"
    )
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || a == 0
                || (a == 100 && (64..128).contains(&b))) // shared address space (RFC 6598)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link-local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        assert_eq!(retry_after_seconds("120"), Some(120));
        assert_eq!(retry_after_seconds("soon"), None);
    }
}
