//! The transports: SMTP through lettre's pooled async transport, or the
//! outbox folder (one `.eml` file per message). Both take the same lettre
//! `Message` from the one message builder and answer with the same
//! `SendOutcome`, so the worker cannot tell them apart.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Mail, Transport as TransportKind, ENV_SMTP_PASSWORD};
use crate::fsutil::{write_atomic, Durability};

/// What one send attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The server accepted the message (2xx after DATA) or it is in the outbox.
    Sent { reply: String },
    /// A 4xx reply, a timeout, a refused or dropped connection: try again later.
    Retry { error: String },
    /// A 5xx reply: the server will never take this message.
    Failed { error: String },
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("mail.smtp_url has a user ({user}) but {ENV_SMTP_PASSWORD} is not set")]
    MissingPassword { user: String },
    #[error("cannot set up TLS for {host}: {message}")]
    Tls { host: String, message: String },
    #[error("mail.smtp_url: unknown tls={0} (expected required, opportunistic or none)")]
    TlsMode(String),
}

pub enum Transport {
    Outbox { dir: PathBuf },
    Smtp { mailer: AsyncSmtpTransport<Tokio1Executor>, timeout: Duration, url: String },
}

impl Transport {
    pub fn from_config(mail: &Mail) -> Result<Self, TransportError> {
        match mail.transport {
            TransportKind::Outbox => Ok(Self::Outbox { dir: mail.outbox_dir.clone() }),
            TransportKind::Smtp => Self::smtp(mail),
        }
    }

    fn smtp(mail: &Mail) -> Result<Self, TransportError> {
        let url = &mail.smtp_url;
        // Config validation guarantees a host.
        let host = url.host_str().unwrap_or("127.0.0.1").trim_matches(['[', ']']).to_owned();
        let implicit_tls = url.scheme() == "smtps";
        let port = url.port().unwrap_or(if implicit_tls { 465 } else { 25 });
        let tls_error = |e: lettre::transport::smtp::Error| TransportError::Tls {
            host: host.clone(),
            message: e.to_string(),
        };
        let mode = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        // A password never crosses the network in clear by accident: with a
        // user and no explicit `tls=`, STARTTLS is required unless the server
        // is on this machine.
        let loopback = host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let mode = match mode {
            None if !url.username().is_empty() && !loopback => Some("required".to_owned()),
            other => other,
        };
        let tls = match (implicit_tls, mode.as_deref()) {
            (true, _) => Tls::Wrapper(TlsParameters::new(host.clone()).map_err(tls_error)?),
            (false, None | Some("opportunistic")) => {
                Tls::Opportunistic(TlsParameters::new(host.clone()).map_err(tls_error)?)
            }
            (false, Some("required")) => {
                Tls::Required(TlsParameters::new(host.clone()).map_err(tls_error)?)
            }
            (false, Some("none")) => Tls::None,
            (false, Some(other)) => return Err(TransportError::TlsMode(other.to_owned())),
        };
        let timeout = Duration::from_secs(mail.timeout_secs);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(u32::try_from(mail.concurrency).unwrap_or(8)));
        if !url.username().is_empty() {
            let user = percent_decode(url.username());
            let password = std::env::var(ENV_SMTP_PASSWORD)
                .map_err(|_| TransportError::MissingPassword { user: user.clone() })?;
            builder = builder.credentials(Credentials::new(user, password));
        }
        let shown = format!("{}://{}:{port}", url.scheme(), host);
        Ok(Self::Smtp { mailer: builder.build(), timeout, url: shown })
    }

    /// Where messages go, for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Outbox { dir } => format!("the outbox folder {}", dir.display()),
            Self::Smtp { url, .. } => format!("the SMTP server {url}"),
        }
    }

    /// Sends one message. `name` is a stable, file-safe name for it (used
    /// for the outbox file, so a resend overwrites instead of duplicating).
    pub async fn send(&self, message: Message, name: &str) -> SendOutcome {
        match self {
            Self::Outbox { dir } => {
                let path = dir.join(format!("{name}.eml"));
                let bytes = message.formatted();
                let written = path.clone();
                match tokio::task::spawn_blocking(move || {
                    write_atomic(&written, &bytes, Durability::ProcessCrash)
                })
                .await
                {
                    Ok(Ok(())) => {
                        SendOutcome::Sent { reply: format!("written to {}", path.display()) }
                    }
                    Ok(Err(e)) => SendOutcome::Retry {
                        error: format!("cannot write {}: {e}", path.display()),
                    },
                    Err(e) => SendOutcome::Retry {
                        error: format!("cannot write {}: {e}", path.display()),
                    },
                }
            }
            Self::Smtp { mailer, timeout, .. } => {
                // lettre's own timeout covers each network step; this one
                // bounds the whole transaction.
                match tokio::time::timeout(*timeout * 2, mailer.send(message)).await {
                    Err(_) => SendOutcome::Retry {
                        error: format!("no answer within {}s", (*timeout * 2).as_secs()),
                    },
                    Ok(Ok(response)) => {
                        let text: Vec<&str> = response.message().collect();
                        SendOutcome::Sent {
                            reply: format!("{} {}", response.code(), text.join(" ")),
                        }
                    }
                    Ok(Err(e)) if e.is_permanent() => {
                        SendOutcome::Failed { error: crate::templates::error_chain(&e) }
                    }
                    Ok(Err(e)) => SendOutcome::Retry { error: crate::templates::error_chain(&e) },
                }
            }
        }
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}
