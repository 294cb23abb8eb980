//! `cordon dead-letters --queue nats://…`: the handler of requests that
//! used up their deliveries (SCALE-OUT.md condition 2).
//!
//! nats-server publishes a max-deliveries advisory when a request was
//! delivered `max_deliver` times without an ack (its workers died, or lost
//! contact, every time). In a work-queue stream such a request then sits,
//! delivered to no one, until `max_age` deletes it without a trace. The
//! advisories are captured in the stream `CORDON_ADV`, so a handler that is
//! down when one fires still sees it when it starts.
//!
//! For each advisory the handler copies the request to
//! `cordon.dlq.<tenant>` (stream `CORDON_DLQ`, kept 7 days), records the
//! result `LOST` with `attempt` = the deliveries (a KV `create`: a worker
//! that finished after all keeps its result), writes the `LOST` record in
//! its own audit log when its result is the one that counts, deletes the
//! request from the work stream and wakes the waiters. Infrastructure
//! errors are retried in place; the advisory is acknowledged last, so a
//! handler killed half-way does it again (every step is idempotent).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use cordon::audit::AuditTrail;
use cordon::ErrorCode;
use cordon_registry::minisign::SecretKey;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::watch;

use super::{
    connect, create_result, ended_without_run, result_key, retry, subject, QueueError, QueueSettings, WireRequest,
};
use super::{ADVISORY_CONSUMER, ADVISORY_STREAM, EXEC_STREAM, PULL_EXPIRES};

/// The name in results and records of what the handler decided.
const WORKER: &str = "dead-letters";

/// The fields of a max-deliveries advisory the handler uses.
#[derive(Debug, Deserialize)]
struct Advisory {
    stream_seq: u64,
    deliveries: u64,
}

/// Runs the handler until `stop` turns true.
pub async fn run(
    settings: QueueSettings,
    trail: AuditTrail,
    mut stop: watch::Receiver<bool>,
) -> Result<(), QueueError> {
    let signer = super::result_signer(&settings)?;
    let (client, js) = connect(&settings, super::Role::DeadLetters, "cordon-dead-letters").await?;
    let consumer: jetstream::consumer::PullConsumer =
        retry(Duration::from_secs(60), Duration::from_millis(200), || {
            js.get_consumer_from_stream(ADVISORY_CONSUMER, ADVISORY_STREAM)
        })
        .await
        .map_err(|e| QueueError::Setup {
            what: format!("consumer {ADVISORY_CONSUMER} (start `cordon serve --queue` first)"),
            detail: e.to_string(),
        })?;
    let results = retry(Duration::from_secs(60), Duration::from_millis(200), || super::results(&js)).await?;
    let exec = retry(Duration::from_secs(60), Duration::from_millis(200), || js.get_stream(EXEC_STREAM))
        .await
        .map_err(|e| QueueError::Setup { what: format!("stream {EXEC_STREAM}"), detail: e.to_string() })?;
    eprintln!("cordon dead-letters: watching {ADVISORY_STREAM}");
    while !*stop.borrow() {
        // No idle heartbeats: async-nats 0.51's batch stalls after one
        // (it returns Pending without re-arming its waker) and then drops
        // the delivery that follows. A short expiry re-issues a pull lost
        // in a failover instead (the client gives up on it 5 s later).
        let batch = consumer.batch().max_messages(16).expires(PULL_EXPIRES);
        let mut msgs = tokio::select! {
            b = batch.messages() => match b {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("cordon dead-letters: pull failed (retrying): {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while let Some(next) = tokio::select! { m = msgs.next() => m, _ = stop.changed() => None } {
            let Ok(msg) = next else { break };
            match serde_json::from_slice::<Advisory>(&msg.payload) {
                Ok(adv) => {
                    if let Err(e) = give_up(&client, &js, &exec, (&results, signer.as_ref()), &trail, &adv).await {
                        // Left unacknowledged: it comes back.
                        eprintln!("cordon dead-letters: request at {EXEC_STREAM} #{}: {e}", adv.stream_seq);
                        continue;
                    }
                }
                Err(e) => eprintln!("cordon dead-letters: ignoring an advisory that does not parse: {e}"),
            }
            let _ = retry(Duration::from_secs(30), Duration::from_millis(250), || msg.double_ack()).await;
        }
    }
    let _ = client.flush().await;
    Ok(())
}

async fn give_up(
    client: &async_nats::Client,
    js: &jetstream::Context,
    exec: &jetstream::stream::Stream,
    (results, signer): (&kv::Store, Option<&SecretKey>),
    trail: &AuditTrail,
    adv: &Advisory,
) -> Result<(), String> {
    let in_place = Duration::from_secs(30);
    let pause = Duration::from_millis(250);
    let raw = retry(in_place, pause, || exec.get_raw_message(adv.stream_seq)).await;
    let raw = match raw {
        Ok(m) => m,
        // Already deleted: done by an earlier pass.
        Err(e) if e.to_string().contains("no message found") => return Ok(()),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let req: WireRequest = match serde_json::from_slice(&raw.payload) {
        Ok(r) => r,
        Err(e) => {
            let _ = exec.delete_message(adv.stream_seq).await;
            return Err(format!("deleted a request that does not parse: {e}"));
        }
    };
    let key = result_key(&req.tenant, &req.id);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", key.as_str());
    let copied = retry(in_place, pause, || async {
        js.publish_with_headers(subject::dlq(&req.tenant), headers.clone(), raw.payload.clone()).await?.await
    })
    .await;
    copied.map_err(|e| format!("cannot copy {key} to the dead-letter stream: {e}"))?;
    let attempts = u32::try_from(adv.deliveries).unwrap_or(u32::MAX);
    let message = format!("no worker finished it in {attempts} deliveries; a copy is in {}", subject::dlq(&req.tenant));
    let (result, value) = ended_without_run(&req.id, ErrorCode::Lost, &message, WORKER, attempts);
    let created = create_result(results, signer, &key, &value, in_place)
        .await
        .map_err(|e| format!("cannot record {key} as LOST: {e}"))?;
    if created {
        let subject = req.audit_subject(WORKER, attempts);
        if let Err(e) = trail.record_unstarted(&subject, &req.id, None, result.audit_ending(""), &[]) {
            eprintln!("cordon dead-letters: cannot write the LOST record of {key}: {e}");
        }
        eprintln!("cordon dead-letters: {key} LOST after {attempts} deliveries");
    }
    retry(in_place, pause, || async {
        match exec.delete_message(adv.stream_seq).await {
            Err(e) if !e.to_string().contains("not found") => Err(e),
            _ => Ok(()),
        }
    })
    .await
    .map_err(|e| format!("cannot delete {key} from {EXEC_STREAM}: {e}"))?;
    let stored = if created { crate::metrics::Stored::First } else { crate::metrics::Stored::Refused };
    super::notify_done(client, signer, &req.tenant, &req.id, &value, stored).await;
    Ok(())
}
