//! Replicas share reconciliation passes: the last pass, whichever replica made it, is
//! what every replica serves, and a replica's background loop skips its pass while
//! another replica's is younger than the interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy_app::{reconcile, App, OpContext};
use tenancy_domain::time::Timestamp;
use tenancy_store::Store;
use tenancy_store_sql::testing::{self, TestDb};
use tokio_util::sync::CancellationToken;

fn replica(db: &TestDb, node: &str) -> Arc<App> {
    let store: Arc<dyn Store> = db.store.clone();
    let mut app = App::new(tenancy_app::Services::new(store));
    app.set_node_id(node);
    Arc::new(app)
}

async fn last_node(app: &App) -> Option<(String, Timestamp)> {
    let last = app.reconciliation_last(&OpContext::system()).await.unwrap();
    last.map(|r| (r.node, r.finished_at))
}

async fn passes_are_shared(db: TestDb) {
    let (a, b) = (replica(&db, "a"), replica(&db, "b"));
    assert!(last_node(&b).await.is_none(), "no pass yet");
    let interval = Duration::from_secs(30);
    let shutdown = CancellationToken::new();
    let loop_a = tokio::spawn(reconcile::worker::Reconciler::new(a.clone(), interval).run(shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Some(last) = last_node(&b).await {
            break last;
        }
        assert!(Instant::now() < deadline, "a made no pass");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(first.0, "a", "b serves a's pass");

    // b starts within a's interval: it makes no pass of its own.
    let loop_b = tokio::spawn(reconcile::worker::Reconciler::new(b.clone(), interval).run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(last_node(&a).await, Some(first.clone()), "b skipped its pass");

    shutdown.cancel();
    loop_a.await.unwrap();
    loop_b.await.unwrap();

    // A replica whose interval a's pass (half a second old) has outlived makes one.
    let c = replica(&db, "c");
    let shutdown = CancellationToken::new();
    let loop_c =
        tokio::spawn(reconcile::worker::Reconciler::new(c.clone(), Duration::from_millis(200)).run(shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while last_node(&a).await.is_none_or(|(node, _)| node != "c") {
        assert!(Instant::now() < deadline, "c made no pass though a's was older than its interval");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    loop_c.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replicas_share_reconciliation_passes() {
    passes_are_shared(testing::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_share_reconciliation_passes() {
    passes_are_shared(testing::postgres().await).await;
}
