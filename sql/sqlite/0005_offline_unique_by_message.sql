-- The offline table's unique key leads with msg_id instead of user_id.
--
-- Each chat message inserts two offline rows (the message for its
-- recipient, the DELIVERED receipt for its sender). Keyed by user first,
-- each insert landed on a leaf of that user's own, so every row dirtied
-- a 4 KiB page of its own, written to the WAL at commit and again at the
-- checkpoint. msg_id grows with every message, so keyed by it first the
-- rows of one transaction share the B-tree's last leaves.
--
-- Every look-up by this key gives all four columns (the hot path's
-- dedupe, its claims by (user, message, kind, by)); reading a user's
-- backlog goes through the partial index offline_unread, unchanged.
--
-- Nothing references offline, so the table is copied as in migration 3.
CREATE TABLE offline_new (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    msg_id       INTEGER NOT NULL REFERENCES messages (msg_id),
    receipt_kind INTEGER NOT NULL DEFAULT 0
                 CHECK (receipt_kind = 0 OR receipt_kind = 2 OR receipt_kind = 3),
    receipt_by   INTEGER NOT NULL DEFAULT 0,
    has_read     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (msg_id, user_id, receipt_kind, receipt_by)
);
INSERT INTO offline_new (id, user_id, msg_id, receipt_kind, receipt_by, has_read)
    SELECT id, user_id, msg_id, receipt_kind, receipt_by, has_read FROM offline;
DROP TABLE offline;
ALTER TABLE offline_new RENAME TO offline;
CREATE INDEX offline_unread ON offline (user_id, id) WHERE has_read = 0;
