//! `[bounces.imap]`: the bounce mailbox herald polls over IMAP. The URL
//! names the server, the user and the mailbox (`imaps://user@host/Bounces`);
//! the password comes only from `HERALD_BOUNCES_IMAP_PASSWORD`. A password
//! crosses the network only inside TLS: `imaps://` is TLS from the first
//! byte, `imap://` goes on only after STARTTLS, except to a server on this
//! machine (loopback) or with `tls = "none"`, which `herald check` warns
//! about.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use super::env::ENV_IMAP_PASSWORD;
use super::mail::without_password;
use super::problems::Check;

/// How the connection to the IMAP server is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapTls {
    /// `imaps://`: TLS from the first byte (RFC 8314).
    Implicit,
    /// `imap://`: STARTTLS (RFC 3501 6.2.1), required unless the server is
    /// on a loopback address.
    StartTls,
    /// `tls = "none"`: never; the password crosses the network in clear.
    None,
}

#[derive(Debug, Clone)]
pub struct Imap {
    /// The URL as written, without a password (it may have none anyway).
    pub url: Url,
    pub host: String,
    pub port: u16,
    pub tls: ImapTls,
    /// The user for LOGIN, percent-decoded.
    pub user: String,
    /// The mailbox the reports arrive in: the URL's path, INBOX when empty.
    pub mailbox: String,
    /// Where processed reports are moved (created when missing).
    pub processed_folder: String,
    /// How often the daemon polls, in seconds.
    pub every_secs: u64,
    /// Certificates (PEM) of a private CA the server's certificate is
    /// signed by, trusted besides the usual public roots.
    pub ca_file: Option<PathBuf>,
}

impl Imap {
    /// Whether the server is on this machine, where a connection without
    /// TLS reaches no network.
    pub fn loopback(&self) -> bool {
        is_loopback(&self.host)
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawImap {
    url: String,
    processed_folder: String,
    every_secs: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
    tls: String,
}

impl Default for RawImap {
    fn default() -> Self {
        Self {
            url: String::new(),
            processed_folder: "herald-processed".into(),
            every_secs: 300,
            ca_file: None,
            tls: "auto".into(),
        }
    }
}

const SECTION: &str = "bounces.imap";

pub(super) fn check(raw: &RawImap, c: &mut Check) -> Option<Imap> {
    let every_secs = c.int(SECTION, "every_secs", raw.every_secs, 10..=86_400);
    let ca_file =
        raw.ca_file.as_deref().map(str::trim).filter(|f| !f.is_empty()).map(|f| c.resolve(f));
    let tls_none = match raw.tls.as_str() {
        "auto" | "" => false,
        "none" => true,
        other => {
            c.problem(
                c.place(SECTION, None, "tls"),
                format!("bounces.imap.tls is `{other}`; expected \"auto\" (imaps:// is TLS, imap:// needs STARTTLS) or \"none\""),
            );
            false
        }
    };
    let processed_folder = match mailbox_name(raw.processed_folder.trim()) {
        Ok(name) => Some(name),
        Err(e) => {
            c.problem(
                c.place(SECTION, None, "processed_folder"),
                format!("bounces.imap.processed_folder: {e}"),
            );
            None
        }
    };
    let imap = match parse_url(&raw.url) {
        Ok((url, host, port, implicit, user, mailbox)) => {
            let tls = match (implicit, tls_none) {
                (true, false) => Some(ImapTls::Implicit),
                (false, false) => Some(ImapTls::StartTls),
                (false, true) => Some(ImapTls::None),
                (true, true) => {
                    c.problem(
                        c.place(SECTION, None, "tls"),
                        "bounces.imap.tls = \"none\" contradicts an imaps:// URL (TLS from the start); use imap:// for a connection without TLS",
                    );
                    None
                }
            };
            tls.map(|tls| Imap {
                url,
                host,
                port,
                tls,
                user,
                mailbox,
                processed_folder: String::new(),
                every_secs,
                ca_file,
            })
        }
        Err(e) => {
            c.problem(c.place(SECTION, None, "url"), e);
            None
        }
    };
    let mut imap = imap?;
    imap.processed_folder = processed_folder?;
    if imap.processed_folder.eq_ignore_ascii_case(&imap.mailbox) {
        c.problem(
            c.place(SECTION, None, "processed_folder"),
            format!("bounces.imap.processed_folder is the polled mailbox itself (`{}`); name another folder, e.g. \"herald-processed\"", imap.mailbox),
        );
        return None;
    }
    Some(imap)
}

/// The URL's parts: itself, host, port, whether TLS is implicit, user and
/// mailbox.
fn parse_url(text: &str) -> Result<(Url, String, u16, bool, String, String), String> {
    let shown = without_password(text);
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "bounces.imap.url is empty; give the mailbox as imaps://user@imap.example.com/Bounces"
                .into(),
        );
    }
    let url =
        Url::parse(text).map_err(|e| format!("bounces.imap.url `{shown}` is not a URL: {e}"))?;
    let implicit = match url.scheme() {
        "imaps" => true,
        "imap" => false,
        other => {
            return Err(format!(
                "bounces.imap.url must start with imaps:// (TLS from the start) or imap:// (STARTTLS), not {other}://"
            ))
        }
    };
    if url.password().is_some() {
        return Err(format!(
            "bounces.imap.url must not contain a password: put the user in the URL and the password in {ENV_IMAP_PASSWORD}"
        ));
    }
    let host = url.host_str().unwrap_or("").trim_matches(['[', ']']).to_owned();
    if host.is_empty() {
        return Err(format!("bounces.imap.url `{shown}` has no host"));
    }
    let user = percent_encoding::percent_decode_str(url.username())
        .decode_utf8()
        .map_err(|_| format!("bounces.imap.url `{shown}`: the user is not UTF-8"))?
        .into_owned();
    if user.is_empty() {
        return Err(format!(
            "bounces.imap.url `{shown}` has no user; write it as imaps://USER@{host}/… (the password goes in {ENV_IMAP_PASSWORD})"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "bounces.imap.url `{shown}` has a query or fragment; herald reads only user, host, port and mailbox from it"
        ));
    }
    let path = url.path().trim_start_matches('/');
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| format!("bounces.imap.url `{shown}`: the mailbox is not UTF-8"))?;
    let mailbox = if path.is_empty() { "INBOX".to_owned() } else { path.into_owned() };
    let mailbox = mailbox_name(&mailbox).map_err(|e| format!("bounces.imap.url `{shown}`: {e}"))?;
    let port = url.port().unwrap_or(if implicit { 993 } else { 143 });
    Ok((url, host, port, implicit, user, mailbox))
}

/// A mailbox name herald can send as an IMAP quoted string as it is:
/// printable ASCII without `"`, `\`, `%` and `*` (non-ASCII names need
/// IMAP's modified UTF-7, which herald does not write).
fn mailbox_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("a mailbox name is empty".into());
    }
    if name.len() > 200 {
        return Err("a mailbox name is longer than 200 characters".into());
    }
    if let Some(bad) = name.chars().find(|&ch| !(' '..='~').contains(&ch) || "\"\\%*".contains(ch))
    {
        return Err(format!(
            "the mailbox name `{}` holds {bad:?}; use printable ASCII without \", \\, % and * (a non-ASCII folder needs its IMAP modified UTF-7 name, e.g. `&AOk-t&AOk-` for `été`)",
            name.escape_debug()
        ));
    }
    Ok(name.to_owned())
}

/// What `herald check` warns about in `[bounces.imap]`.
pub(crate) fn warnings(imap: &Imap) -> Vec<String> {
    let mut warnings = Vec::new();
    if imap.tls == ImapTls::None && !imap.loopback() {
        warnings.push(format!(
            "bounces.imap.tls = \"none\": the password in {ENV_IMAP_PASSWORD} and every report cross the network to {} in clear; use imaps:// or imap:// with STARTTLS",
            imap.host
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> Result<(Url, String, u16, bool, String, String), String> {
        parse_url(url)
    }

    #[test]
    fn the_url_gives_host_port_user_and_mailbox() {
        let (_, host, port, implicit, user, mailbox) =
            parsed("imaps://bounces%40news.example.com@imap.example.com/Bounces").unwrap();
        assert_eq!(
            (host.as_str(), port, implicit, user.as_str(), mailbox.as_str()),
            ("imap.example.com", 993, true, "bounces@news.example.com", "Bounces")
        );
        let (_, _, port, implicit, _, mailbox) = parsed("imap://u@127.0.0.1:1143").unwrap();
        assert_eq!((port, implicit, mailbox.as_str()), (1143, false, "INBOX"));
        let (_, _, _, _, _, mailbox) = parsed("imap://u@[::1]/Lists/Bounces").unwrap();
        assert_eq!(mailbox, "Lists/Bounces");
    }

    #[test]
    fn a_url_with_a_password_or_without_user_is_refused_without_showing_the_password() {
        let e = parsed("imaps://u:hunter2@imap.example.com/").unwrap_err();
        assert!(e.contains("HERALD_BOUNCES_IMAP_PASSWORD") && !e.contains("hunter2"), "{e}");
        let e = parsed("imaps://imap.example.com/").unwrap_err();
        assert!(e.contains("no user"), "{e}");
        let e = parsed("pop3://u@imap.example.com/").unwrap_err();
        assert!(e.contains("imaps://"), "{e}");
    }

    fn config(imap: &str, env: &[(&str, &str)]) -> Result<crate::config::Config, Vec<String>> {
        let text = format!("{}\n[bounces.imap]\n{imap}", crate::config::GOOD);
        let env: Vec<(String, String)> =
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        crate::config::parse(std::path::Path::new("/site/herald.toml"), &text, &env)
            .map_err(|e| e.problems())
    }

    #[test]
    fn the_section_gets_its_defaults_and_the_password_variable_is_no_override() {
        let c = config(
            "url = \"imap://bounces@mail.example.com/Bounces\"\nca_file = \"ca.pem\"\n",
            &[("HERALD_BOUNCES_IMAP_PASSWORD", "secret")],
        )
        .unwrap();
        let imap = c.bounces.imap.unwrap();
        assert_eq!(imap.tls, ImapTls::StartTls);
        assert_eq!((imap.port, imap.every_secs), (143, 300));
        assert_eq!(imap.processed_folder, "herald-processed");
        assert_eq!(imap.ca_file, Some(PathBuf::from("/site/ca.pem")));
        assert!(warnings(&imap).is_empty());
        assert!(config("", &[]).unwrap_err()[0].contains("bounces.imap.url is empty"));
        assert!(crate::config::parse(
            std::path::Path::new("/site/herald.toml"),
            crate::config::GOOD,
            &[]
        )
        .unwrap()
        .bounces
        .imap
        .is_none());
    }

    #[test]
    fn problems_name_their_line() {
        let p = config(
            "url = \"imaps://u@mail.example.com/Bounces\"\ntls = \"none\"\nevery_secs = 1\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("herald.toml:21") && p[0].contains("every_secs"), "{p:?}");
        assert!(p[1].contains("herald.toml:20") && p[1].contains("contradicts"), "{p:?}");
        let p = config(
            "url = \"imaps://u@mail.example.com/Bounces\"\nprocessed_folder = \"bounces\"\n",
            &[],
        )
        .unwrap_err();
        assert!(p[0].contains("the polled mailbox itself"), "{p:?}");
    }

    #[test]
    fn herald_check_warns_about_a_password_in_clear_beyond_this_machine() {
        let far = config("url = \"imap://u@mail.example.com/\"\ntls = \"none\"\n", &[]).unwrap();
        let w = warnings(far.bounces.imap.as_ref().unwrap());
        assert!(w.len() == 1 && w[0].contains("in clear"), "{w:?}");
        let near = config("url = \"imap://u@127.0.0.1:1143/\"\ntls = \"none\"\n", &[]).unwrap();
        assert!(warnings(near.bounces.imap.as_ref().unwrap()).is_empty());
    }

    #[test]
    fn mailbox_names_that_would_need_quoting_rules_herald_lacks_are_refused() {
        assert!(mailbox_name("herald-processed").is_ok());
        assert!(mailbox_name("Bounces/Done 2026").is_ok());
        for bad in ["a\"b", "a\\b", "all*", "x%", "été", "a\r\nb", ""] {
            assert!(mailbox_name(bad).is_err(), "{bad:?} was taken");
        }
    }
}
