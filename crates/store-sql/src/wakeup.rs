//! Waking background loops when there may be new work.
//!
//! In-process, a counter in a `watch` channel shared by every store of the process is
//! bumped whenever a transaction writes events or audit entries, or creates
//! deliveries (spurious wake-ups are harmless: consumers just look for work). On
//! PostgreSQL the same transactions also `pg_notify` [`CHANNEL`], delivered at commit
//! to every replica's `LISTEN`er.

use std::sync::OnceLock;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

pub(crate) const CHANNEL: &str = "tenancy_wakeup";

fn local() -> &'static watch::Sender<u64> {
    static LOCAL: OnceLock<watch::Sender<u64>> = OnceLock::new();
    LOCAL.get_or_init(|| watch::channel(0).0)
}

pub(crate) fn bump() {
    local().send_modify(|n| *n = n.wrapping_add(1));
}

pub(crate) fn subscribe_local() -> watch::Receiver<u64> {
    local().subscribe()
}

/// A receiver fed by this process and by `NOTIFY` on `url`; the listening task ends
/// when the receiver is dropped and reconnects when the connection drops.
pub(crate) fn subscribe_postgres(url: String) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    let mut local = subscribe_local();
    tokio::spawn(async move {
        let mut listener: Option<PgListener> = None;
        loop {
            if listener.is_none() {
                match PgListener::connect(&url).await {
                    Ok(mut l) => match l.listen(CHANNEL).await {
                        Ok(()) => {
                            listener = Some(l);
                            // Anything may have happened while not listening.
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                        }
                        Err(e) => tracing::warn!(error = %e, "failed to LISTEN for wake-ups"),
                    },
                    Err(e) => tracing::warn!(error = %e, "failed to connect the wake-up listener"),
                }
            }
            let listening = listener.is_some();
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tx.closed() => return,
                r = local.changed() => {
                    if r.is_err() {
                        return;
                    }
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
                r = notified => match r {
                    Ok(()) => tx.send_modify(|n| *n = n.wrapping_add(1)),
                    Err(e) => {
                        tracing::warn!(error = %e, "wake-up listener failed; reconnecting");
                        listener = None;
                    }
                },
                _ = tokio::time::sleep(Duration::from_secs(1)), if !listening => {}
            }
        }
    });
    rx
}
