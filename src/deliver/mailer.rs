//! The sender of mails outside the delivery ledger (confirmation mails from
//! the sign-up form): a background task with a queue, one connection used
//! while there is mail and let go after a quiet half minute. A mail that
//! cannot be sent is logged; the reader can ask again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{SendOutcome, Sender, Transport};
use crate::compose::Outgoing;

/// Mails waiting for the background sender.
const QUEUE: usize = 1024;

/// How long an idle connection is kept.
const IDLE: Duration = Duration::from_secs(30);

/// A mail for the background sender: the message, the outbox file name, and
/// for the log what it is and to whom.
struct Queued {
    message: Outgoing,
    file_name: String,
    what: &'static str,
    email: String,
}

/// Where mails are handed to the background sender; cheap to clone.
#[derive(Clone)]
pub struct MailQueue(mpsc::Sender<Queued>);

impl MailQueue {
    /// Queues a mail. When the queue is full this waits for room rather than
    /// drop the mail; `false` when the sender has stopped.
    pub async fn send(
        &self,
        message: Outgoing,
        file_name: String,
        what: &'static str,
        email: String,
    ) -> bool {
        self.0.send(Queued { message, file_name, what, email }).await.is_ok()
    }
}

/// The background sender; [`Mailer::finish`] sends what is queued before
/// the process exits. It runs until every [`MailQueue`] is dropped.
pub struct Mailer(tokio::task::JoinHandle<()>);

impl Mailer {
    pub fn start(transport: Arc<Transport>) -> (MailQueue, Mailer) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        (MailQueue(queue), Mailer(tokio::spawn(run(transport, receiver))))
    }

    /// Waits up to `grace` for the queued mails to go out.
    pub async fn finish(self, grace: Duration) {
        if tokio::time::timeout(grace, self.0).await.is_err() {
            tracing::warn!("mails still queued after {}s were not sent", grace.as_secs());
        }
    }
}

async fn run(transport: Arc<Transport>, mut queue: mpsc::Receiver<Queued>) {
    let mut sender = Sender::new(transport, 0);
    loop {
        match tokio::time::timeout(IDLE, queue.recv()).await {
            Ok(Some(mail)) => match sender.send(&mail.message, &mail.file_name).await {
                SendOutcome::Sent { .. } => {
                    tracing::info!(email = %mail.email, "sent the {}", mail.what)
                }
                SendOutcome::Retry { error, .. } | SendOutcome::Failed { error, .. } => {
                    tracing::warn!(email = %mail.email, "could not send the {}: {error}; the reader can ask again", mail.what)
                }
            },
            Ok(None) => break,
            Err(_) => sender.close().await,
        }
    }
    sender.close().await;
}

/// Sends `edition` to `email` alone, outside the ledger (`herald deliver
/// --test`): what the server said, and where it went. The message is a
/// reader's copy for subscriber 0, nobody, so its links act on no one.
pub async fn send_test(
    config: &crate::config::Config,
    store: &crate::store::Store,
    templates: crate::templates::Templates,
    secret: crate::subscribe::Secret,
    edition: &crate::store::Edition,
    email: &crate::email::EmailAddress,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(SendOutcome, String), super::DeliverError> {
    use crate::compose::{message_id_domain, Digest, Recipient};
    let digest = Digest::load(config, store, templates, secret, edition).await?;
    let list = &edition.list;
    let recipient = Recipient {
        subscriber: 0,
        email: email.to_string(),
        name: None,
        token_key: "test".into(),
        message_id: format!(
            "<herald.test.{list}.{}.{}@{}>",
            edition.edition_date.format("%Y%m%d"),
            now.timestamp(),
            message_id_domain(config)
        ),
    };
    let message = digest.message(&recipient, now)?;
    let transport = Arc::new(Transport::from_config(&config.mail)?);
    let mut sender = Sender::new(Arc::clone(&transport), 0);
    let outcome = sender.send(&message, &format!("test-{list}-{}", now.timestamp())).await;
    sender.close().await;
    Ok((outcome, transport.describe()))
}
