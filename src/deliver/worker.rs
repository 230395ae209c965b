//! A delivery worker: takes claimed rows, builds each reader's message and
//! sends it on its own connection through its lane, and hands the outcome to
//! the recorder. It waits for the previous outcome to be recorded before the
//! next send, so a kill leaves at most one sent-but-unrecorded message.
//!
//! When each message costs an RSA signature, a worker takes its next job
//! (when one is at hand) as soon as the current message is built, and has
//! it built and signed on the blocking pool while the current one is sent:
//! the signatures use the cores while the connections wait for replies.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::shared::{Done, Held, Job, Lane, Shared};
use super::{file_name, Recipient, SendOutcome, Sender};
use crate::compose::{ComposeError, Outgoing};

/// The next job, taken while the current message is sent, and its message
/// being built on the blocking pool.
struct Ahead<'a> {
    job: Job,
    held: Held<'a>,
    build: tokio::task::JoinHandle<Result<Outgoing, ComposeError>>,
}

fn recipient(job: &Job) -> Recipient {
    Recipient {
        subscriber: job.claim.subscriber,
        email: job.claim.email.clone(),
        name: job.claim.name.clone(),
        token_key: job.claim.token_key.clone(),
        message_id: job.claim.message_id.clone(),
    }
}

/// Builds `job`'s message on the blocking pool.
fn build_blocking(
    shared: &Arc<Shared>,
    job: &Job,
) -> tokio::task::JoinHandle<Result<Outgoing, ComposeError>> {
    let building = Arc::clone(shared);
    let (recipient, now) = (recipient(job), job.now);
    tokio::task::spawn_blocking(move || building.digest.message(&recipient, now))
}

pub(super) async fn worker(shared: Arc<Shared>, lane: usize, done: mpsc::Sender<Done>) {
    let mut sender = Sender::new(Arc::clone(&shared.transport), lane);
    let mut last: Option<oneshot::Receiver<()>> = None;
    let me = &shared.lanes[lane];
    let mut ahead: Option<Ahead<'_>> = None;
    loop {
        if shared.halted() || me.capped() {
            break;
        }
        if let Some(wait) = me.aside() {
            if !shared.lanes.iter().any(Lane::available) {
                shared.stop(
                    "every relay failed to connect repeatedly; the rest waits for the next run"
                        .into(),
                );
                break;
            }
            if shared.finished() {
                break;
            }
            tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
            continue;
        }
        let (_held, job, build) = match ahead.take() {
            Some(Ahead { job, held, build }) => (held, job, Some(build)),
            None => {
                // Held from before the take until the job is handed on, so
                // that no worker ends while a job that a failing relay may
                // hand back is out.
                let held = shared.hold();
                let job = match shared.next_requeued() {
                    Some(job) => Some(job),
                    None => {
                        let next = shared.jobs.lock().await.recv().await;
                        next.or_else(|| shared.next_requeued())
                    }
                };
                let Some(job) = job else {
                    drop(held);
                    if shared.finished() {
                        break;
                    }
                    // Another worker's job may yet come back for this one to send.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                (held, job, None)
            }
        };
        if me.aside().is_some() {
            // Set aside while this worker waited for the job: leave it to
            // the others.
            shared.requeue(job);
            continue;
        }
        match me.reserve(&shared.store, shared.day).await {
            Ok(true) => {}
            Ok(false) => {
                // Today's cap is reached: another relay may still take it.
                shared.requeue(job);
                break;
            }
            Err(e) => {
                shared.requeue(job);
                shared.stop(format!("the store failed: {e}"));
                break;
            }
        }
        // An RSA signature costs a fifth of a millisecond: such messages
        // are built on the blocking pool, so that the tasks driving the
        // connections are never held up by it. (Handing a message over
        // costs more than an Ed25519 signature.)
        let slow = shared.digest.signs_slowly();
        let build = build.or_else(|| slow.then(|| build_blocking(&shared, &job)));
        let message = match build {
            Some(build) => build.await.unwrap_or_else(|e| {
                Err(ComposeError::Message {
                    list: shared.digest.list().to_owned(),
                    email: job.claim.email.clone(),
                    message: format!("building the message stopped: {e}"),
                })
            }),
            None => shared.digest.message(&recipient(&job), job.now),
        };
        if slow {
            // The next job, if one is at hand without waiting: its message
            // is built while this one is sent.
            let held = shared.hold();
            let next = shared
                .next_requeued()
                .or_else(|| shared.jobs.try_lock().ok().and_then(|mut jobs| jobs.try_recv().ok()));
            if let Some(next) = next {
                let build = build_blocking(&shared, &next);
                ahead = Some(Ahead { job: next, held, build });
            }
        }
        if let Some(recorded) = last.take() {
            if recorded.await.is_err() {
                break; // the recorder stopped
            }
        }
        if let Some(limiter) = &me.limiter {
            limiter.until_ready().await;
        }
        if let Err(e) = me.take_slot(&shared.store).await {
            me.unreserve();
            shared.requeue(job);
            shared.stop(format!("the store failed: {e}"));
            break;
        }
        let outcome = match message {
            Ok(message) => sender.send(&message, &file_name(&job.claim.message_id)).await,
            // A message that cannot be built now will not build later either.
            Err(e) => SendOutcome::Failed { error: e.to_string(), bounce: false },
        };
        if !matches!(outcome, SendOutcome::Sent { .. }) {
            me.unreserve();
        }
        match &outcome {
            SendOutcome::Retry { unreachable: true, .. } => {
                me.connection_failed();
                // Another relay that works takes the message, without an
                // attempt counted against the reader.
                let others =
                    shared.lanes.iter().enumerate().any(|(i, l)| i != lane && l.available());
                if others {
                    shared.requeue(job);
                    continue;
                }
                if !shared.lanes.iter().any(Lane::available) {
                    shared.stop(
                        "every relay failed to connect repeatedly; the rest waits for the next run"
                            .into(),
                    );
                }
            }
            SendOutcome::Sent { .. } => me.failures_in_row.store(0, Ordering::Relaxed),
            _ => me.failures_in_row.store(0, Ordering::Relaxed),
        }
        let (recorded, wait_recorded) = oneshot::channel();
        if done.send(Done { claim: job.claim, outcome, lane, recorded }).await.is_err() {
            break;
        }
        last = Some(wait_recorded);
    }
    // A job taken ahead and not sent goes back for another worker, or to
    // the rows released at the end.
    if let Some(Ahead { job, held, .. }) = ahead.take() {
        shared.requeue(job);
        drop(held);
    }
    if let Some(recorded) = last {
        let _ = recorded.await;
    }
    sender.close().await;
}
