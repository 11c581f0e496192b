//! Rollouts stored as a row plus one `rollout_members` row per tenant (migration 0033):
//! a save writes the row and the tenants it names; a rollout recorded before 0033 (its
//! tenants inside its JSON) reads whole and moves its tenants to rows on its next save.

use sqlx::{AnyConnection, Connection, Row};
use tenancy_domain::rollout::{tenant_state as S, Rollout, RolloutTenant, Wave, WaveCounts};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Error;
use tenancy_store::{Effects, Store};
use tenancy_store_sql::testing::TestDb;

fn tenant(id: &str) -> RolloutTenant {
    RolloutTenant {
        tenant_id: id.into(),
        previous_release: Some("1.0.0".into()),
        previous_plan: None,
        maintenance_window: None,
        state: S::PENDING.into(),
        execution_id: None,
        started_at: None,
        rollback_execution_id: None,
        step: None,
        reason: None,
    }
}

fn rollout(id: &str) -> Rollout {
    let wave = |name: &str, ids: &[&str]| Wave {
        name: name.into(),
        status: "pending".into(),
        counts: WaveCounts::default(),
        tenants: ids.iter().map(|t| tenant(t)).collect(),
    };
    let mut r = Rollout {
        id: id.into(),
        release: Some("2.0.0".into()),
        plan: None,
        status: "running".into(),
        selector: Default::default(),
        strategy: Default::default(),
        current_wave: 0,
        bake_until: None,
        halted_reason: None,
        waves: vec![wave("wave 1", &["t1"]), wave("rest", &["t2", "t3"])],
        failed: Vec::new(),
        skipped: Vec::new(),
        not_rolled_back: Vec::new(),
        started_by: None,
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
        rev: 1,
    };
    r.refresh();
    r
}

/// The next revision of `r` with `f` applied to it.
fn next(r: &Rollout, f: impl FnOnce(&mut Rollout)) -> Rollout {
    let mut n = r.clone();
    f(&mut n);
    n.rev += 1;
    n.refresh();
    n
}

async fn members(url: &str, id: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut c = AnyConnection::connect(url).await.unwrap();
    sqlx::query("SELECT COUNT(*) FROM rollout_members WHERE rollout_id = $1")
        .bind(id)
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0)
}

async fn saves_write_the_named_tenants(db: TestDb) {
    let rs = db.store.rollouts();
    let r = rollout("rol_1");
    rs.rollout_insert(&r, &Effects::none()).await.unwrap();
    assert_eq!(rs.rollout_get("rol_1").await.unwrap(), r);
    assert_eq!(members(&db.url, "rol_1").await, 3);
    assert_eq!(rs.rollout_get_changed("rol_1", r.rev).await.unwrap(), None, "unchanged");

    // t1 starts; the save names it.
    let r2 = next(&r, |n| {
        n.waves[0].tenants[0].state = S::UPGRADING.into();
        n.waves[0].tenants[0].execution_id = Some("exe_1".into());
    });
    let changed = r2.changed_tenants(&r);
    assert_eq!(changed, vec![(0, 0)]);
    rs.rollout_save(&r2, &changed, &Effects::none()).await.unwrap();
    assert_eq!(rs.rollout_get("rol_1").await.unwrap(), r2);
    assert_eq!(rs.rollout_get_changed("rol_1", r.rev).await.unwrap(), Some(r2.clone()), "moved on");

    // A save from a stale revision changes nothing.
    let stale = next(&r, |n| n.waves[1].tenants[1].state = S::SKIPPED.into());
    let e = rs.rollout_save(&stale, &stale.changed_tenants(&r), &Effects::none()).await.unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed { .. }), "{e:?}");
    assert_eq!(rs.rollout_get("rol_1").await.unwrap(), r2);

    // Only the named tenants are written: the failed one, not t3's unnamed change.
    let r3 = next(&r2, |n| {
        n.waves[0].tenants[0].state = S::FAILED.into();
        n.waves[0].tenants[0].step = Some("apply".into());
        n.waves[1].tenants[1].state = S::SKIPPED.into();
    });
    rs.rollout_save(&r3, &[(0, 0)], &Effects::none()).await.unwrap();
    let got = rs.rollout_get("rol_1").await.unwrap();
    assert_eq!(got.waves[0].tenants[0], r3.waves[0].tenants[0]);
    assert_eq!(got.failed.len(), 1, "the failed list is derived from the stored tenants");
    assert_eq!(got.waves[1].tenants[1].state, S::PENDING);

    // Ended: the tenants are free for another rollout; its members stay readable.
    let done = next(&got, |n| n.status = "aborted".into());
    rs.rollout_save(&done, &[], &Effects::none()).await.unwrap();
    let mut again = rollout("rol_2");
    again.created_at = Timestamp(2);
    rs.rollout_insert(&again, &Effects::none()).await.unwrap();
    let list = rs.rollout_list().await.unwrap();
    assert_eq!(list.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["rol_2", "rol_1"]);
    assert_eq!(list[1], done);
}

async fn a_record_from_before_the_members_table_reads_whole_and_moves_on_save(db: TestDb) {
    let rs = db.store.rollouts();
    let r = rollout("rol_old");
    rs.rollout_insert(&r, &Effects::none()).await.unwrap();
    // As the version before migration 0033 stored it: the tenants inside the JSON.
    sqlx::any::install_default_drivers();
    let mut c = AnyConnection::connect(&db.url).await.unwrap();
    sqlx::query("DELETE FROM rollout_members").execute(&mut c).await.unwrap();
    sqlx::query("UPDATE rollouts SET rollout = $1 WHERE id = 'rol_old'")
        .bind(serde_json::to_string(&r).unwrap())
        .execute(&mut c)
        .await
        .unwrap();
    assert_eq!(rs.rollout_get("rol_old").await.unwrap(), r);
    let r2 = next(&r, |n| n.waves[1].tenants[0].state = S::SKIPPED.into());
    rs.rollout_save(&r2, &r2.changed_tenants(&r), &Effects::none()).await.unwrap();
    assert_eq!(members(&db.url, "rol_old").await, 3, "every tenant moved to its row");
    assert_eq!(rs.rollout_get("rol_old").await.unwrap(), r2);
}

#[tokio::test]
async fn saves_write_the_named_tenants_sqlite() {
    saves_write_the_named_tenants(tenancy_store_sql::testing::sqlite().await).await;
}

#[tokio::test]
async fn saves_write_the_named_tenants_postgres() {
    saves_write_the_named_tenants(tenancy_store_sql::testing::postgres().await).await;
}

#[tokio::test]
async fn a_record_from_before_the_members_table_reads_whole_and_moves_on_save_sqlite() {
    a_record_from_before_the_members_table_reads_whole_and_moves_on_save(tenancy_store_sql::testing::sqlite().await)
        .await;
}

#[tokio::test]
async fn a_record_from_before_the_members_table_reads_whole_and_moves_on_save_postgres() {
    a_record_from_before_the_members_table_reads_whole_and_moves_on_save(tenancy_store_sql::testing::postgres().await)
        .await;
}
