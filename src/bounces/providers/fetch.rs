//! The SNS webhook's fetches: the signing certificate (kept by URL), its
//! issuer's certificate when the chain needs it (SNS's file holds the
//! signing certificate alone; kept by URL), and a subscription's
//! confirmation. Only URLs that pass [`super::ses::amazon_url`] (or, for an
//! issuer, [`super::ses::issuer_url`]) come here. The client trusts the public roots
//! and the operator's `bounces.webhooks.ses_extra_ca_file`, follows no
//! redirect, caps what it reads and gives up after ten seconds. With
//! `HERALD_DNS_SERVER` set, names are looked up there (as `herald check
//! --dns` does), which is how the tests reach a loopback server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use url::Url;

/// The DNS server to ask instead of the system's (`herald check --dns`
/// reads it too).
const ENV_DNS_SERVER: &str = "HERALD_DNS_SERVER";
/// The most bytes read of a certificate or a confirmation's answer.
const MAX_BODY: usize = 64 * 1024;
/// Certificates kept; SNS uses one per region at a time.
const MAX_CACHED: usize = 32;
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct SnsFetcher {
    /// https only: certificates and confirmations.
    client: reqwest::Client,
    /// Also http, for the issuer certificates Amazon publishes over http
    /// (only for URLs that pass `ses::issuer_url`).
    issuers: reqwest::Client,
    extra: Vec<CertificateDer<'static>>,
    certificates: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    issuer_files: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl SnsFetcher {
    pub fn new(extra_ca_file: Option<&Path>) -> Result<Self, String> {
        let mut extra = Vec::new();
        if let Some(path) = extra_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                format!("cannot read bounces.webhooks.ses_extra_ca_file {}: {e}", path.display())
            })?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                extra.push(cert.map_err(|e| {
                    format!("bounces.webhooks.ses_extra_ca_file {}: {e}", path.display())
                })?);
            }
            if extra.is_empty() {
                return Err(format!(
                    "bounces.webhooks.ses_extra_ca_file {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        let resolver: Option<Arc<AskServer>> = match std::env::var(ENV_DNS_SERVER) {
            Ok(server) => {
                let addr: SocketAddr = server.parse().map_err(|_| {
                    format!(
                        "HERALD_DNS_SERVER is `{server}`, not an address and port like 127.0.0.1:53"
                    )
                })?;
                Some(Arc::new(AskServer::new(addr)?))
            }
            Err(_) => None,
        };
        let client = |https_only: bool| -> Result<reqwest::Client, String> {
            let mut builder = reqwest::Client::builder()
                .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
                .https_only(https_only)
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(TIMEOUT)
                .timeout(TIMEOUT);
            for cert in &extra {
                let cert = reqwest::Certificate::from_der(cert.as_ref())
                    .map_err(|e| format!("bounces.webhooks.ses_extra_ca_file: {e}"))?;
                builder = builder.add_root_certificate(cert);
            }
            if let Some(resolver) = &resolver {
                builder = builder.dns_resolver(Arc::clone(resolver));
            }
            builder.build().map_err(|e| format!("cannot set up the HTTP client: {e}"))
        };
        Ok(Self {
            client: client(true)?,
            issuers: client(false)?,
            extra,
            certificates: Mutex::new(HashMap::new()),
            issuer_files: Mutex::new(HashMap::new()),
        })
    }

    /// The certificates trusted besides the public roots.
    pub fn extra(&self) -> &[CertificateDer<'static>] {
        &self.extra
    }

    /// The PEM at `url` (a `SigningCertURL`), fetched once and then kept.
    pub async fn certificate(&self, url: &Url) -> Result<Arc<Vec<u8>>, String> {
        kept(&self.certificates, url, self.get(&self.client, url)).await
    }

    /// The issuer's certificate at `url` (one `ses::issuer_url` gave),
    /// fetched once and then kept.
    pub async fn issuer(&self, url: &Url) -> Result<Arc<Vec<u8>>, String> {
        kept(&self.issuer_files, url, self.get(&self.issuers, url)).await
    }

    /// Forgets what was fetched from `url` (it did not verify: fetch it
    /// anew next time, in case it was replaced).
    pub fn forget(&self, url: &Url) {
        for cache in [&self.certificates, &self.issuer_files] {
            cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(url.as_str());
        }
    }

    /// Confirms a subscription: a GET of its SubscribeURL.
    pub async fn confirm(&self, url: &Url) -> Result<(), String> {
        self.get(&self.client, url).await.map(|_| ())
    }

    async fn get(&self, client: &reqwest::Client, url: &Url) -> Result<Vec<u8>, String> {
        let mut response = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("cannot fetch {url}: {}", crate::text::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("cannot read {url}: {}", crate::text::error_chain(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(format!("{url} is over {MAX_BODY} bytes"));
            }
        }
        Ok(body)
    }
}

/// What `cache` holds for `url`, else what `fetch` gives, then kept.
async fn kept(
    cache: &Mutex<HashMap<String, Arc<Vec<u8>>>>,
    url: &Url,
    fetch: impl std::future::Future<Output = Result<Vec<u8>, String>>,
) -> Result<Arc<Vec<u8>>, String> {
    let held =
        cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(url.as_str()).cloned();
    if let Some(bytes) = held {
        return Ok(bytes);
    }
    let bytes = Arc::new(fetch.await?);
    let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(url.as_str().to_owned(), Arc::clone(&bytes));
    Ok(bytes)
}

/// Looks names up at one DNS server.
struct AskServer(hickory_resolver::TokioResolver);

impl AskServer {
    fn new(addr: SocketAddr) -> Result<Self, String> {
        use hickory_resolver::config::{
            ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig,
        };
        let connection = |protocol| {
            let mut c = ConnectionConfig::new(protocol);
            c.port = addr.port();
            c
        };
        let server = NameServerConfig::new(
            addr.ip(),
            true,
            vec![connection(ProtocolConfig::Udp), connection(ProtocolConfig::Tcp)],
        );
        let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
        let mut builder = hickory_resolver::TokioResolver::builder_with_config(
            config,
            hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
        );
        builder.options_mut().timeout = Duration::from_secs(2);
        let resolver = builder.build().map_err(|e| format!("cannot set up DNS lookups: {e}"))?;
        Ok(Self(resolver))
    }
}

impl reqwest::dns::Resolve for AskServer {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        let host = format!("{}.", name.as_str().trim_end_matches('.'));
        Box::pin(async move {
            let found = resolver.lookup_ip(host).await?;
            let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
