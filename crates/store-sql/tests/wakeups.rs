//! Wake-ups: on PostgreSQL a `NOTIFY` from any connection (another replica) reaches
//! `subscribe_wakeups`; on SQLite commits in this process do.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection;
use tenancy_domain::event::Event;
use tenancy_store::{Effects, EventStore, Store};

async fn changed(rx: &mut tokio::sync::watch::Receiver<u64>, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .unwrap_or_else(|_| panic!("no wake-up: {what}"))
        .expect("sender alive");
}

#[tokio::test]
async fn postgres_notify_from_another_connection_wakes() {
    let db = tenancy_store_sql::testing::postgres().await;
    let mut rx = db.store.subscribe_wakeups();
    // The listener reports once when it is listening.
    changed(&mut rx, "listener ready").await;
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("SELECT pg_notify('tenancy_wakeup', '')").execute(&mut other).await.unwrap();
    changed(&mut rx, "NOTIFY from another connection").await;
}

#[tokio::test]
async fn sqlite_commits_with_events_wake() {
    let db = tenancy_store_sql::testing::sqlite().await;
    let store: std::sync::Arc<dyn Store> = db.store.clone();
    let mut rx = store.subscribe_wakeups();
    rx.borrow_and_update();
    let fx = Effects::none().with_event(Event::new("X", None, vec![], json!({})));
    store.commit_effects(&fx).await.unwrap();
    changed(&mut rx, "an event committed").await;
}
