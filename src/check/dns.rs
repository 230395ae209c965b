//! `herald check --dns`: the sending domain's deliverability records — SPF,
//! the DKIM selector's key, DMARC — looked up with hickory's resolver (the
//! nameservers of /etc/resolv.conf, each tried in turn with retries, or
//! `HERALD_DNS_SERVER` as host:port), and the rules they must meet.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::config::{Config, DkimAlgorithm};

/// The environment variable naming the DNS server to ask instead of the
/// system's.
pub const ENV_DNS_SERVER: &str = "HERALD_DNS_SERVER";

/// How long one query waits for an answer, and how often it is asked.
const TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPTS: usize = 2;

/// Why a lookup gave no answer.
#[derive(Debug, thiserror::Error)]
enum Unanswered {
    /// No server answered: the checks are skipped, not failed.
    #[error("{0} did not answer")]
    Silent(String),
    /// The server answered with an error.
    #[error("{0}")]
    Failed(String),
}

struct Lookup {
    resolver: TokioResolver,
    /// Who is asked, for messages.
    server: String,
}

impl Lookup {
    fn new() -> Result<Self, String> {
        let (builder, server) = match std::env::var(ENV_DNS_SERVER) {
            Ok(text) => {
                let addr: SocketAddr = text.parse().map_err(|_| {
                    format!(
                        "{ENV_DNS_SERVER} is `{text}`, not an address and port like 127.0.0.1:53"
                    )
                })?;
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
                let builder =
                    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
                (builder, format!("the DNS server {addr}"))
            }
            Err(_) => {
                let builder = TokioResolver::builder_tokio().map_err(|e| {
                    format!("no DNS server to ask ({e}); set {ENV_DNS_SERVER} to one (host:port)")
                })?;
                (builder, "no DNS server of /etc/resolv.conf".to_owned())
            }
        };
        let mut builder = builder;
        let options = builder.options_mut();
        options.timeout = TIMEOUT;
        options.attempts = ATTEMPTS;
        // Every check asks afresh.
        options.cache_size = 0;
        let resolver = builder.build().map_err(|e| format!("cannot set up DNS lookups: {e}"))?;
        Ok(Self { resolver, server })
    }

    /// The TXT records at `name`, each record's strings joined; none when
    /// the name has no TXT record or does not exist.
    async fn txt(&self, name: &str) -> Result<Vec<String>, Unanswered> {
        // Fully qualified, so no search domain is tried.
        match self.resolver.txt_lookup(format!("{}.", name.trim_end_matches('.'))).await {
            Ok(found) => Ok(found
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    hickory_resolver::proto::rr::RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part).into_owned())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(hickory_resolver::net::NetError::Timeout)
            | Err(hickory_resolver::net::NetError::NoConnections) => {
                Err(Unanswered::Silent(self.server.clone()))
            }
            Err(e) => Err(Unanswered::Failed(format!(
                "{} answered {name} with an error: {e}",
                self.server
            ))),
        }
    }
}

/// Looks up SPF, the DKIM key and DMARC for the sending domain. Returns the
/// problems and the lines that are fine (or why the lookups were skipped).
pub async fn check_dns(config: &Config) -> (Vec<String>, Vec<String>) {
    let (mut problems, mut notes) = (Vec::new(), Vec::new());
    let lookup = match Lookup::new() {
        Ok(lookup) => lookup,
        Err(e) => {
            notes.push(format!("DNS checks skipped: {e}"));
            return (problems, notes);
        }
    };
    let domain = config.mail.from.email.domain().to_owned();

    let spf = match lookup.txt(&domain).await {
        Ok(records) => records,
        Err(e @ Unanswered::Silent(_)) => {
            notes.push(format!("DNS checks skipped: {e} (is there a network?)"));
            return (problems, notes);
        }
        Err(e) => {
            problems.push(format!("SPF: {e}"));
            Vec::new()
        }
    };
    let spf: Vec<&String> =
        spf.iter().filter(|r| r.to_ascii_lowercase().starts_with("v=spf1")).collect();
    match spf.len() {
        0 => problems.push(format!(
            "SPF: {domain} has no SPF record; publish a TXT record like \"v=spf1 include:<your relay's domain> ~all\""
        )),
        1 => notes.push(format!("ok: SPF for {domain}: {}", spf[0])),
        n => problems.push(format!(
            "SPF: {domain} has {n} SPF records, which receivers treat as an error (RFC 7208 section 3.2); merge them into one"
        )),
    }

    if config.mail.dkim.is_empty() {
        notes.push(
            "note: DKIM signing is off (set [[mail.dkim]] selector and key_file); many receivers distrust unsigned bulk mail"
                .into(),
        );
    }
    for dkim in &config.mail.dkim {
        let name = format!("{}._domainkey.{}", dkim.selector, dkim.domain);
        // What to publish, from the key itself (`None` when it cannot be
        // read; `herald check` names that problem on its own).
        let ours = crate::compose::dkim::public_key_record(dkim).ok();
        let publish = ours.clone().unwrap_or_else(|| {
            format!(
                "v=DKIM1; k={}; p=<the public key of {}>",
                algorithm_name(dkim.algorithm),
                dkim.key_file.display()
            )
        });
        match lookup.txt(&name).await {
            Ok(records) => match records.iter().find(|r| r.contains("p=")) {
                Some(record) => {
                    let want = algorithm_name(dkim.algorithm);
                    let k = tag(record, "k").unwrap_or_else(|| "rsa".into()).to_ascii_lowercase();
                    let p = tag(record, "p").unwrap_or_default();
                    if k != want {
                        problems.push(format!(
                            "DKIM: {name} publishes a k={k} key but herald signs with {want}"
                        ));
                    } else if p.is_empty() {
                        problems.push(format!(
                            "DKIM: {name} has an empty key (p=): the selector is revoked"
                        ));
                    } else if ours.as_deref().and_then(|o| tag(o, "p")).is_some_and(|o| o != p) {
                        problems.push(format!(
                            "DKIM: {name} publishes another key than {}; publish the TXT record \"{publish}\"",
                            dkim.key_file.display()
                        ));
                    } else {
                        notes.push(format!("ok: DKIM key at {name}"));
                    }
                }
                None => problems
                    .push(format!("DKIM: no key at {name}; publish the TXT record \"{publish}\"")),
            },
            Err(e) => problems.push(format!("DKIM: {e}")),
        }
    }

    let name = format!("_dmarc.{domain}");
    match lookup.txt(&name).await {
        Ok(records) => {
            match records.iter().find(|r| r.to_ascii_lowercase().starts_with("v=dmarc1")) {
                Some(record) => notes.push(format!("ok: DMARC at {name}: {record}")),
                None => problems.push(format!(
                    "DMARC: no record at {name}; publish a TXT record like \"v=DMARC1; p=none; rua=mailto:dmarc@{domain}\""
                )),
            }
        }
        Err(e) => problems.push(format!("DMARC: {e}")),
    }
    (problems, notes)
}

fn algorithm_name(algorithm: DkimAlgorithm) -> &'static str {
    match algorithm {
        DkimAlgorithm::Rsa => "rsa",
        DkimAlgorithm::Ed25519 => "ed25519",
    }
}

/// A tag's value in a DKIM record (`k=rsa; p=…`), white space removed
/// (long keys are split over several strings and may carry spaces).
fn tag(record: &str, name: &str) -> Option<String> {
    record.split(';').find_map(|t| {
        let (key, value) = t.split_once('=')?;
        (key.trim() == name).then(|| value.chars().filter(|c| !c.is_whitespace()).collect())
    })
}
