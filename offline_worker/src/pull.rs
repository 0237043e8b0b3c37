//! The offline pull with its compare-and-set.

use std::collections::HashSet;

use im_store::{OfflineKey, OfflineRow, Store, StoreResult, UserId};

const PAGE: u32 = 1000;

/// Claims and returns up to `max_rows` unread offline rows of `user`, in row
/// order. Each row is claimed with `has_read`'s compare-and-set, so when
/// several devices or reconnects pull at once every row goes to exactly one
/// of them; the others get the same messages through their cursor sync.
pub async fn pull(
    store: &dyn Store,
    user: UserId,
    max_rows: usize,
) -> StoreResult<Vec<OfflineRow>> {
    let mut claimed = Vec::new();
    let mut seen_up_to = 0;
    while claimed.len() < max_rows {
        let rows: Vec<OfflineRow> = store
            .offline_unread(user, PAGE)
            .await?
            .into_iter()
            .filter(|r| r.id > seen_up_to)
            .collect();
        let Some(last) = rows.last() else { break };
        seen_up_to = last.id;
        let keys: Vec<OfflineKey> = rows.iter().map(OfflineRow::key).collect();
        let won: HashSet<OfflineKey> = store
            .claim_offline_keys(user, &keys)
            .await?
            .into_iter()
            .collect();
        claimed.extend(rows.into_iter().filter(|r| won.contains(&r.key())));
    }
    claimed.truncate(max_rows);
    Ok(claimed)
}
