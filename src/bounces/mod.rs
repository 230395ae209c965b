//! What comes back after the handoff. A relay that accepted a digest may
//! still fail to deliver it, and says so later: as a delivery status
//! notification to the envelope sender, as a complaint when a reader marks
//! the digest as spam, or as a provider's webhook. Every way in ends here,
//! in [`Intake`]: the inbound SMTP listener and the bounce mailbox hand it
//! whole messages ([`Intake::message`]), which [`classify`] reads; the
//! webhooks and the SMTP conversation itself hand it findings
//! ([`Intake::finding`]). Each finding about a reader becomes one stored
//! event and its action (see `store::bounces`).
//!
//! Whom a report is about: the VERP token of the address it came back to
//! (or that it quotes), which only herald can make; else the address it
//! names, when herald has mailed that address. A report that names no such
//! reader is recorded and acts on no one. Nothing in a report can mail
//! anyone or run anything: its text is only read for the fields above.

pub mod classify;
pub mod imap;
pub mod listener;
pub mod providers;
#[cfg(test)]
mod tests;
pub mod verp;

use chrono::{DateTime, Utc};

pub use classify::{classify, Finding, Kind, Report, Shape};
use verp::Tag;

use crate::config::Config;
use crate::email::EmailAddress;
use crate::store::{BounceAction, BouncePolicy, BounceRecorded, NewBounce, Store, StoreError};
use crate::subscribe::Secret;

/// Where a report came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// herald's inbound SMTP listener.
    Smtp,
    /// The bounce mailbox, over IMAP.
    Imap,
    /// The relay's refusal during herald's own SMTP conversation.
    Session,
    /// Amazon SES, through SNS.
    Ses,
    Postmark,
    Mailgun,
    Sendgrid,
    /// The generic JSON webhook.
    Webhook,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Smtp => "smtp",
            Via::Imap => "imap",
            Via::Session => "session",
            Via::Ses => "ses",
            Via::Postmark => "postmark",
            Via::Mailgun => "mailgun",
            Via::Sendgrid => "sendgrid",
            Via::Webhook => "webhook",
        }
    }
}

/// What became of one message that came in.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub shape: Shape,
    /// One entry per finding: what was done about it.
    pub taken: Vec<BounceRecorded>,
}

impl Outcome {
    /// Whether the message was a report herald understood (a bounce, a
    /// complaint, an auto-reply), as against ordinary mail.
    pub fn understood(&self) -> bool {
        self.shape != Shape::NotABounce
    }
}

/// The one way in for every report.
#[derive(Clone)]
pub struct Intake {
    store: Store,
    secret: Secret,
    bounce_address: Option<EmailAddress>,
    policy: BouncePolicy,
}

/// When bounces suppress an address, from `[bounces]`.
pub fn policy(config: &Config) -> BouncePolicy {
    BouncePolicy {
        hard_after: config.bounces.hard_after,
        soft_after: config.bounces.soft_after,
        soft_window: chrono::TimeDelta::days(i64::from(config.bounces.soft_window_days)),
    }
}

/// Records a relay's permanent refusal of a digest during herald's own SMTP
/// conversation (a 5xx reply), as a hard or soft bounce by its status.
pub async fn record_refusal(
    store: &Store,
    config: &Config,
    tag: Tag,
    email: &str,
    error: &str,
    now: DateTime<Utc>,
) -> Result<BounceRecorded, StoreError> {
    let status = classify::status_in(error).filter(|s| s.starts_with('5'));
    let finding = Finding {
        kind: status.as_deref().map_or(Kind::Soft, classify::failure_kind),
        address: Some(email.to_owned()),
        status,
        diagnostic: Some(error.chars().take(500).collect()),
    };
    let recorded = store
        .record_bounce(
            &new_bounce(Via::Session, &finding, Some(tag), &[], None),
            policy(config),
            now,
        )
        .await?;
    log(Via::Session, &finding, &recorded, "");
    Ok(recorded)
}

fn new_bounce(
    via: Via,
    finding: &Finding,
    tag: Option<Tag>,
    message_ids: &[String],
    reference: Option<String>,
) -> NewBounce {
    let email = finding
        .address
        .as_deref()
        .map(|a| EmailAddress::parse(a).map_or_else(|_| a.to_owned(), |e| e.as_str().to_owned()));
    NewBounce {
        via: via.as_str().to_owned(),
        kind: finding.kind.as_str().to_owned(),
        email,
        subscriber: tag.map(|t| t.subscriber),
        edition: tag.map(|t| t.edition),
        message_ids: message_ids.to_vec(),
        status: finding.status.clone(),
        diagnostic: finding.diagnostic.clone(),
        reference: reference.map(|r| format!("{}:{r}", via.as_str())),
    }
}

impl Intake {
    pub fn new(store: Store, secret: Secret, config: &Config) -> Self {
        Self::with(store, secret, config.mail.bounce_address.clone(), policy(config))
    }

    pub fn with(
        store: Store,
        secret: Secret,
        bounce_address: Option<EmailAddress>,
        policy: BouncePolicy,
    ) -> Self {
        Self { store, secret, bounce_address, policy }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    pub fn bounce_address(&self) -> Option<&EmailAddress> {
        self.bounce_address.as_ref()
    }

    /// What `address` (an envelope recipient) is to the bounce address;
    /// `Elsewhere` for every address when no bounce address is set.
    pub fn recipient(&self, address: &str) -> verp::Recipient {
        match &self.bounce_address {
            Some(bounce) => verp::recipient(&self.secret, bounce, address),
            None => verp::Recipient::Elsewhere,
        }
    }

    /// Reads one whole message and acts on what it says. `recipients` are
    /// the envelope recipients it came to, when known (the SMTP listener's
    /// RCPT TO); a VERP token there or in the message's headers names the
    /// reader. Ordinary mail is recorded nowhere.
    pub async fn message(
        &self,
        raw: &[u8],
        via: Via,
        recipients: &[String],
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let report = classify(raw);
        let tags = self.tags(&report, recipients);
        let mut taken = Vec::new();
        for (n, finding) in report.findings.iter().enumerate() {
            // One token names the reader of a single-recipient report; with
            // several recipients, each is found by its address.
            let tag = (tags.len() == 1 && report.findings.len() == 1).then(|| tags[0]);
            let reference = report.message_id.as_ref().map(|id| {
                format!(
                    "{id}#{}",
                    finding
                        .address
                        .as_deref()
                        .map_or_else(|| n.to_string(), str::to_ascii_lowercase)
                )
            });
            let recorded = self
                .record(via, finding, tag, &report.original_message_ids, reference, now)
                .await?;
            log(via, finding, &recorded, &report.subject);
            taken.push(recorded);
        }
        if report.findings.is_empty() && report.shape != Shape::NotABounce {
            tracing::info!(via = via.as_str(), subject = %report.subject, "a report that names no recipient: nothing to do");
        }
        Ok(Outcome { shape: report.shape, taken })
    }

    /// Acts on one finding that came in already read (a webhook, the SMTP
    /// conversation). `tag` names the reader when the way in knows it;
    /// `reference` names the event, so a replay is acted on once.
    pub async fn finding(
        &self,
        via: Via,
        finding: &Finding,
        tag: Option<Tag>,
        reference: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<BounceRecorded, StoreError> {
        let recorded = self.record(via, finding, tag, &[], reference, now).await?;
        log(via, finding, &recorded, "");
        Ok(recorded)
    }

    async fn record(
        &self,
        via: Via,
        finding: &Finding,
        tag: Option<Tag>,
        message_ids: &[String],
        reference: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<BounceRecorded, StoreError> {
        let bounce = new_bounce(via, finding, tag, message_ids, reference);
        self.store.record_bounce(&bounce, self.policy, now).await
    }

    /// The readers VERP tokens name: in the envelope recipients first, else
    /// in the headers the report carries.
    fn tags(&self, report: &Report, recipients: &[String]) -> Vec<Tag> {
        let Some(bounce) = &self.bounce_address else { return Vec::new() };
        let mut tags: Vec<Tag> = recipients
            .iter()
            .filter_map(|r| match verp::recipient(&self.secret, bounce, r) {
                verp::Recipient::Tagged(tag) => Some(tag),
                _ => None,
            })
            .collect();
        if tags.is_empty() {
            tags = verp::tags_in(&self.secret, bounce, &report.addressed);
        }
        tags.dedup();
        tags
    }
}

fn log(via: Via, finding: &Finding, recorded: &BounceRecorded, subject: &str) {
    let address =
        recorded.email.as_deref().or(finding.address.as_deref()).unwrap_or("(no address)");
    let status = finding.status.as_deref().unwrap_or("-");
    match recorded.action {
        BounceAction::Suppressed => {
            tracing::warn!(via = via.as_str(), to = %address, status, "{} bounce: address suppressed", finding.kind.as_str())
        }
        BounceAction::Unsubscribed => {
            tracing::warn!(via = via.as_str(), to = %address, "complaint: the reader left every list and is suppressed")
        }
        BounceAction::Counted => {
            tracing::info!(via = via.as_str(), to = %address, status, "{} bounce counted", finding.kind.as_str())
        }
        BounceAction::Ignored => {
            tracing::info!(via = via.as_str(), to = %address, subject, "{} report about no reader herald mailed: ignored", finding.kind.as_str())
        }
        BounceAction::Duplicate => {
            tracing::debug!(via = via.as_str(), to = %address, "a report seen before: ignored")
        }
        BounceAction::None => {
            tracing::info!(via = via.as_str(), to = %address, "{}: nothing to do", finding.kind.as_str())
        }
    }
}
