-- The single-node schema. Ids are INTEGER (i64); times are milliseconds since
-- the Unix epoch. Never edit this file once applied: add a new migration.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- Only the SHA-256 of a token is kept, so a leaked file holds no usable token.
CREATE TABLE tokens (
    token_hash    TEXT    PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    created_at_ms INTEGER NOT NULL,
    revoked       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE friend_requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    from_user     INTEGER NOT NULL REFERENCES users (id),
    to_user       INTEGER NOT NULL REFERENCES users (id),
    note          TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX friend_requests_from ON friend_requests (from_user, status);
CREATE INDEX friend_requests_to ON friend_requests (to_user, status);

-- One row per direction: (a, b) carries a's remark for b.
CREATE TABLE friends (
    user_id   INTEGER NOT NULL REFERENCES users (id),
    friend_id INTEGER NOT NULL REFERENCES users (id),
    remark    TEXT,
    since_ms  INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
) WITHOUT ROWID;

-- A dissolved group keeps its row (and its conversation) but has no members.
CREATE TABLE groups (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    creator       INTEGER NOT NULL REFERENCES users (id),
    created_at_ms INTEGER NOT NULL,
    dissolved     INTEGER NOT NULL DEFAULT 0
);

-- role: 1 member, 2 admin, 3 creator.
CREATE TABLE group_members (
    group_id     INTEGER NOT NULL REFERENCES groups (id),
    user_id      INTEGER NOT NULL REFERENCES users (id),
    role         INTEGER NOT NULL CHECK (role IN (1, 2, 3)),
    joined_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members (user_id);

-- id is 'u{lo}-{hi}' for two users or 'g{group}' for a group. last_seq is
-- the sequence allocator: append bumps it inside the writing transaction.
CREATE TABLE conversations (
    id            TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('direct', 'group')),
    last_seq      INTEGER NOT NULL DEFAULT 0,
    last_msg_id   INTEGER,
    updated_at_ms INTEGER NOT NULL
);

-- Who may read a conversation, and from where: messages with seq > start_seq.
-- read_seq is the user's read cursor, behind the unread counts and READ receipts.
CREATE TABLE conversation_members (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    user_id         INTEGER NOT NULL REFERENCES users (id),
    start_seq       INTEGER NOT NULL DEFAULT 0,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX conversation_members_user ON conversation_members (user_id);

-- to_user is 0 for a group message, to_group 0 for a one-to-one message.
-- The file columns are NULL for a message without a file.
CREATE TABLE messages (
    msg_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    from_user       INTEGER NOT NULL REFERENCES users (id),
    to_user         INTEGER NOT NULL DEFAULT 0,
    to_group        INTEGER NOT NULL DEFAULT 0,
    client_msg_id   TEXT    NOT NULL,
    content_type    INTEGER NOT NULL,
    text            TEXT    NOT NULL,
    file_id         TEXT,
    file_name       TEXT,
    file_mime       TEXT,
    file_size       INTEGER,
    sent_at_ms      INTEGER NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (from_user, client_msg_id)
);

-- What a user has not received on any device yet. receipt_kind 0: the row is
-- the message itself (receipt_by 0); 2: a DELIVERED receipt about the message;
-- 3: a READ receipt, by receipt_by. has_read is the claim flag the offline
-- pull compare-and-sets.
CREATE TABLE offline (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    msg_id       INTEGER NOT NULL REFERENCES messages (msg_id),
    receipt_kind INTEGER NOT NULL DEFAULT 0 CHECK (receipt_kind IN (0, 2, 3)),
    receipt_by   INTEGER NOT NULL DEFAULT 0,
    has_read     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, msg_id, receipt_kind, receipt_by)
);
CREATE INDEX offline_unread ON offline (user_id, has_read, id);

-- kind: 2 DELIVERED, 3 READ; at most one of each per message and recipient.
CREATE TABLE receipts (
    msg_id  INTEGER NOT NULL REFERENCES messages (msg_id),
    by_user INTEGER NOT NULL REFERENCES users (id),
    kind    INTEGER NOT NULL CHECK (kind IN (2, 3)),
    at_ms   INTEGER NOT NULL,
    PRIMARY KEY (msg_id, by_user, kind)
) WITHOUT ROWID;

CREATE TABLE devices (
    user_id       INTEGER NOT NULL REFERENCES users (id),
    device_id     TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;

-- The highest seq a device has acknowledged in a conversation.
CREATE TABLE device_cursors (
    user_id         INTEGER NOT NULL,
    device_id       TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id)
) WITHOUT ROWID;

CREATE TABLE files (
    id            TEXT    PRIMARY KEY,
    owner         INTEGER NOT NULL REFERENCES users (id),
    name          TEXT    NOT NULL,
    mime          TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);
