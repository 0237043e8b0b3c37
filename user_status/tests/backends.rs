//! The same behaviour from the in-process map and from a real Redis
//! (`IM_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`). A Redis that
//! cannot be reached fails these tests; it never skips them.

use std::sync::Arc;
use std::time::Duration;

use im_user_status::{MemoryUserStatus, RedisUserStatus, UserStatus};

fn redis_url() -> String {
    std::env::var("IM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A backend on a fresh key prefix (which keeps tests apart on one server),
/// and the prefix.
async fn redis_with_prefix(lease: Duration) -> (RedisUserStatus, String) {
    let url = redis_url();
    let prefix = format!("imtest-{}", uuid::Uuid::new_v4().simple());
    let status = RedisUserStatus::connect(&url, &prefix, lease)
        .await
        .unwrap_or_else(|e| {
            panic!("Redis at {url} is required (start it with scripts/ensure-services.sh): {e}")
        });
    (status, prefix)
}

async fn redis(lease: Duration) -> RedisUserStatus {
    redis_with_prefix(lease).await.0
}

async fn backends() -> Vec<(&'static str, Arc<dyn UserStatus>)> {
    vec![
        ("memory", Arc::new(MemoryUserStatus::new())),
        ("redis", Arc::new(redis(Duration::from_secs(60)).await)),
    ]
}

#[tokio::test]
async fn first_online_and_last_offline_are_reported() {
    for (name, s) in backends().await {
        assert!(s.online(1, "phone", "c1").await.unwrap(), "{name}");
        assert!(!s.online(1, "laptop", "c2").await.unwrap(), "{name}");
        let mut found = s.lookup(1).await.unwrap();
        found.sort();
        assert_eq!(found.len(), 2, "{name}");
        assert_eq!(
            (found[0].device.as_str(), found[0].connector.as_str()),
            ("laptop", "c2")
        );
        assert!(!s.offline(1, "phone", "c1").await.unwrap(), "{name}");
        assert!(s.offline(1, "laptop", "c2").await.unwrap(), "{name}");
        assert!(s.lookup(1).await.unwrap().is_empty(), "{name}");
        assert!(
            !s.offline(1, "laptop", "c2").await.unwrap(),
            "{name}: twice"
        );
    }
}

#[tokio::test]
async fn a_device_that_moved_is_not_removed_by_its_old_connector() {
    for (name, s) in backends().await {
        s.online(7, "phone", "c1").await.unwrap();
        assert!(
            !s.online(7, "phone", "c2").await.unwrap(),
            "{name}: reconnect is not a new user"
        );
        assert!(!s.offline(7, "phone", "c1").await.unwrap(), "{name}");
        let found = s.lookup(7).await.unwrap();
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!(found[0].connector, "c2", "{name}");
    }
}

#[tokio::test]
async fn lookup_many_answers_in_input_order() {
    for (name, s) in backends().await {
        s.online(2, "a", "c1").await.unwrap();
        s.online(4, "b", "c2").await.unwrap();
        let got = s.lookup_many(&[1, 2, 3, 4]).await.unwrap();
        assert_eq!(got.len(), 4, "{name}");
        assert!(got[0].is_empty() && got[2].is_empty(), "{name}");
        assert_eq!(got[1][0].device, "a", "{name}");
        assert_eq!(got[3][0].connector, "c2", "{name}");
        assert!(s.lookup_many(&[]).await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn redis_entries_expire_unless_refreshed() {
    let s = redis(Duration::from_millis(300)).await;
    assert!(s.leases(), "Redis entries must be renewed by connectors");
    assert!(!MemoryUserStatus::new().leases());
    s.online(1, "phone", "c1").await.unwrap();
    s.online(2, "phone", "dead").await.unwrap();
    // Keep c1's device alive past the lease; let the dead connector's lapse.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.refresh("c1", &[(1, "phone".into())]).await.unwrap();
    }
    assert_eq!(
        s.lookup(1).await.unwrap().len(),
        1,
        "refreshed device is online"
    );
    assert!(
        s.lookup(2).await.unwrap().is_empty(),
        "dead connector's device expired"
    );
    // The expired user coming back counts as coming online.
    assert!(s.online(2, "phone", "c1").await.unwrap());
    // A device that moved to another connector is not taken back by the
    // old connector's refresh.
    s.online(1, "phone", "c2").await.unwrap();
    let restored = s.refresh("c1", &[(1, "phone".into())]).await.unwrap();
    assert!(restored.is_empty());
    let found = s.lookup(1).await.unwrap();
    assert_eq!((found.len(), found[0].connector.as_str()), (1, "c2"));
}

#[tokio::test]
async fn refresh_writes_back_what_a_restarted_redis_lost() {
    let (s, prefix) = redis_with_prefix(Duration::from_secs(60)).await;
    s.online(1, "phone", "c1").await.unwrap();
    s.online(2, "phone", "c1").await.unwrap();
    // Redis loses user 1's entry, as a restart without persistence does.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:status:{{1}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(s.lookup(1).await.unwrap().is_empty());
    let devices = [(1, "phone".to_owned()), (2, "phone".to_owned())];
    let restored = s.refresh("c1", &devices).await.unwrap();
    assert_eq!(restored, vec![(1, "phone".to_owned())], "only the lost one");
    let found = s.lookup(1).await.unwrap();
    assert_eq!((found.len(), found[0].connector.as_str()), (1, "c1"));
    // Nothing is lost now: the next refresh restores nothing.
    assert!(s.refresh("c1", &devices).await.unwrap().is_empty());
}
