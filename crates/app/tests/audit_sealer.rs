//! The audit sealer and checkpoints on both backends: entries written with their
//! changes are sealed into a chain that `tenancy_audit` verifies, checkpoints commit
//! to it with an RFC 6962 root, and a checkpoint that does not match is reported.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tenancy_app::audit::worker::Sealer;
use tenancy_app::audit::worker::SealerOptions;
use tenancy_app::{App, OpContext};
use tenancy_store::{Effects, Store};

async fn sealing_and_checkpoints(store: Arc<dyn Store>) {
    let app = App::new(tenancy_app::Services::new(store.clone()));
    let ctx = OpContext::system();
    for i in 0..7 {
        let fx = Effects::none().with_audit(ctx.audit("test.act", format!("thing/{i}"), None, json!({"i": i})));
        store.commit_effects(&fx).await.unwrap();
    }
    let opts = SealerOptions { batch: 3, checkpoint_every: 5, ..Default::default() };
    let sealer = Sealer::new(store.clone(), opts);
    let v = app.audit_verify(&ctx).await.unwrap();
    assert_eq!((v.ok, v.records, v.pending), (true, 0, 7));
    assert_eq!(sealer.seal_pending().await.unwrap(), 7);

    let mut last = Instant::now();
    let cp = sealer.checkpoint(false, &mut last).await.unwrap().expect("7 new records: a checkpoint is due");
    assert_eq!(cp.tree_size, 7);
    assert!(sealer.checkpoint(false, &mut last).await.unwrap().is_none(), "nothing new");

    // The root is the RFC 6962 root over the records' hashes, as tenancy_audit computes it.
    let records: Vec<_> = store.audit_sealed(0, 100).await.unwrap();
    tenancy_audit::verify_chain(records.clone()).unwrap();
    let expected = tenancy_audit::Checkpoint::over(&records, "t".into()).unwrap();
    assert_eq!(cp.root, expected.root);

    let v = app.audit_verify(&ctx).await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!((v.records, v.pending), (7, 0));
    assert!(v.checkpoint.as_ref().is_some_and(|c| c.ok && c.tree_size == 7));
    assert_eq!(v.head.as_deref(), Some(records[6].hash.as_str()));

    // The next checkpoint extends the tree with the records sealed since; a sealer of
    // a restarted process, which builds its tree from the first record, agrees.
    for i in 7..11 {
        let fx = Effects::none().with_audit(ctx.audit("test.act", format!("thing/{i}"), None, json!({"i": i})));
        store.commit_effects(&fx).await.unwrap();
    }
    assert_eq!(sealer.seal_pending().await.unwrap(), 4);
    let cp = sealer.checkpoint(true, &mut last).await.unwrap().expect("forced with 4 new records");
    let records: Vec<_> = store.audit_sealed(0, 100).await.unwrap();
    assert_eq!(cp.tree_size, 11);
    assert_eq!(cp.root, tenancy_audit::Checkpoint::over(&records, "t".into()).unwrap().root);
    let restarted = Sealer::new(store.clone(), SealerOptions::default());
    assert!(restarted.checkpoint(true, &mut last).await.unwrap().is_none(), "nothing new since");
    store
        .commit_effects(&Effects::none().with_audit(ctx.audit("test.act", "thing/11".into(), None, json!({}))))
        .await
        .unwrap();
    assert_eq!(restarted.seal_pending().await.unwrap(), 1);
    let cp = restarted.checkpoint(true, &mut last).await.unwrap().expect("forced with 1 new record");
    let records: Vec<_> = store.audit_sealed(0, 100).await.unwrap();
    assert_eq!(
        (cp.tree_size, cp.root.clone()),
        (12, tenancy_audit::Checkpoint::over(&records, "t".into()).unwrap().root)
    );
    let v = app.audit_verify(&ctx).await.unwrap();
    assert!(v.ok && v.checkpoint.as_ref().is_some_and(|c| c.ok && c.tree_size == 12), "{v:?}");

    // A forged later checkpoint is caught.
    store
        .audit_checkpoint_put(&tenancy_store::AuditCheckpoint {
            tree_size: 12 + 1,
            root: "00".repeat(32),
            time: tenancy_domain::time::Timestamp::now(),
        })
        .await
        .unwrap();
    let v = app.audit_verify(&ctx).await.unwrap();
    assert!(!v.ok, "{v:?}");
}

#[tokio::test]
async fn audit_sealing_and_checkpoints_sqlite() {
    let db = tenancy_store_sql::testing::sqlite().await;
    sealing_and_checkpoints(db.store.clone()).await;
}

#[tokio::test]
async fn audit_sealing_and_checkpoints_postgres() {
    let db = tenancy_store_sql::testing::postgres().await;
    sealing_and_checkpoints(db.store.clone()).await;
}
