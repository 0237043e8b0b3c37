-- The cluster schema: the single-node schema (sql/sqlite/0001_init.sql) on
-- InnoDB. Ids are BIGINT; times are milliseconds since the Unix epoch. Never
-- edit this file once applied: add a new migration.
--
-- Every table collates utf8mb4_bin: names, device ids and client message ids
-- compare case-sensitively and sort by code point, as SQLite's TEXT does.
-- `groups` is quoted: it is a reserved word in MySQL 8.

CREATE TABLE users (
    id            BIGINT       NOT NULL AUTO_INCREMENT,
    name          VARCHAR(64)  NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at_ms BIGINT       NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY users_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Only the SHA-256 of a token is kept, so a leaked database holds no usable token.
CREATE TABLE tokens (
    token_hash    CHAR(64) NOT NULL,
    user_id       BIGINT   NOT NULL,
    created_at_ms BIGINT   NOT NULL,
    revoked       TINYINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (token_hash),
    CONSTRAINT tokens_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE friend_requests (
    id            BIGINT      NOT NULL AUTO_INCREMENT,
    from_user     BIGINT      NOT NULL,
    to_user       BIGINT      NOT NULL,
    note          TEXT        NOT NULL,
    status        VARCHAR(16) NOT NULL,
    created_at_ms BIGINT      NOT NULL,
    PRIMARY KEY (id),
    KEY friend_requests_from (from_user, status),
    KEY friend_requests_to (to_user, status),
    CONSTRAINT friend_requests_status CHECK (status IN ('pending', 'accepted', 'rejected')),
    CONSTRAINT friend_requests_from_user FOREIGN KEY (from_user) REFERENCES users (id),
    CONSTRAINT friend_requests_to_user FOREIGN KEY (to_user) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per direction: (a, b) carries a's remark for b.
CREATE TABLE friends (
    user_id   BIGINT       NOT NULL,
    friend_id BIGINT       NOT NULL,
    remark    VARCHAR(255),
    since_ms  BIGINT       NOT NULL,
    PRIMARY KEY (user_id, friend_id),
    CONSTRAINT friends_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT friends_friend FOREIGN KEY (friend_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A dissolved group keeps its row (and its conversation) but has no members.
CREATE TABLE `groups` (
    id            BIGINT       NOT NULL AUTO_INCREMENT,
    name          VARCHAR(255) NOT NULL,
    creator       BIGINT       NOT NULL,
    created_at_ms BIGINT       NOT NULL,
    dissolved     TINYINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    CONSTRAINT groups_creator FOREIGN KEY (creator) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- role: 1 member, 2 admin, 3 creator.
CREATE TABLE group_members (
    group_id     BIGINT  NOT NULL,
    user_id      BIGINT  NOT NULL,
    role         TINYINT NOT NULL,
    joined_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (group_id, user_id),
    KEY group_members_user (user_id),
    CONSTRAINT group_members_role CHECK (role IN (1, 2, 3)),
    CONSTRAINT group_members_group FOREIGN KEY (group_id) REFERENCES `groups` (id),
    CONSTRAINT group_members_member FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- id is 'u{lo}-{hi}' for two users or 'g{group}' for a group. last_seq is
-- the sequence allocator: append locks the row (SELECT ... FOR UPDATE) and
-- bumps it inside the writing transaction.
CREATE TABLE conversations (
    id            VARCHAR(64) NOT NULL,
    kind          VARCHAR(8)  NOT NULL,
    last_seq      BIGINT      NOT NULL DEFAULT 0,
    last_msg_id   BIGINT,
    updated_at_ms BIGINT      NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT conversations_kind CHECK (kind IN ('direct', 'group'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Who may read a conversation, and from where: messages with seq > start_seq.
-- read_seq is the user's read cursor, behind the unread counts and READ receipts.
CREATE TABLE conversation_members (
    conversation_id VARCHAR(64) NOT NULL,
    user_id         BIGINT      NOT NULL,
    start_seq       BIGINT      NOT NULL DEFAULT 0,
    read_seq        BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id),
    KEY conversation_members_user (user_id),
    CONSTRAINT conversation_members_conversation
        FOREIGN KEY (conversation_id) REFERENCES conversations (id),
    CONSTRAINT conversation_members_member FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- to_user is 0 for a group message, to_group 0 for a one-to-one message.
-- The file columns are NULL for a message without a file.
CREATE TABLE messages (
    msg_id          BIGINT       NOT NULL AUTO_INCREMENT,
    conversation_id VARCHAR(64)  NOT NULL,
    seq             BIGINT       NOT NULL,
    from_user       BIGINT       NOT NULL,
    to_user         BIGINT       NOT NULL DEFAULT 0,
    to_group        BIGINT       NOT NULL DEFAULT 0,
    client_msg_id   VARCHAR(64)  NOT NULL,
    content_type    INT          NOT NULL,
    text            TEXT         NOT NULL,
    file_id         VARCHAR(64),
    file_name       VARCHAR(255),
    file_mime       VARCHAR(255),
    file_size       BIGINT,
    sent_at_ms      BIGINT       NOT NULL,
    PRIMARY KEY (msg_id),
    UNIQUE KEY messages_seq (conversation_id, seq),
    UNIQUE KEY messages_client_id (from_user, client_msg_id),
    CONSTRAINT messages_conversation FOREIGN KEY (conversation_id) REFERENCES conversations (id),
    CONSTRAINT messages_sender FOREIGN KEY (from_user) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- What a user has not received on any device yet. receipt_kind 0: the row is
-- the message itself (receipt_by 0); 2: a DELIVERED receipt about the message;
-- 3: a READ receipt, by receipt_by. has_read is the claim flag the offline
-- pull compare-and-sets.
CREATE TABLE offline (
    id           BIGINT  NOT NULL AUTO_INCREMENT,
    user_id      BIGINT  NOT NULL,
    msg_id       BIGINT  NOT NULL,
    receipt_kind TINYINT NOT NULL DEFAULT 0,
    receipt_by   BIGINT  NOT NULL DEFAULT 0,
    has_read     TINYINT NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    UNIQUE KEY offline_row (user_id, msg_id, receipt_kind, receipt_by),
    KEY offline_unread (user_id, has_read, id),
    CONSTRAINT offline_receipt_kind CHECK (receipt_kind IN (0, 2, 3)),
    CONSTRAINT offline_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT offline_message FOREIGN KEY (msg_id) REFERENCES messages (msg_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- kind: 2 DELIVERED, 3 READ; at most one of each per message and recipient.
CREATE TABLE receipts (
    msg_id  BIGINT  NOT NULL,
    by_user BIGINT  NOT NULL,
    kind    TINYINT NOT NULL,
    at_ms   BIGINT  NOT NULL,
    PRIMARY KEY (msg_id, by_user, kind),
    CONSTRAINT receipts_kind CHECK (kind IN (2, 3)),
    CONSTRAINT receipts_message FOREIGN KEY (msg_id) REFERENCES messages (msg_id),
    CONSTRAINT receipts_by_user FOREIGN KEY (by_user) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE devices (
    user_id       BIGINT      NOT NULL,
    device_id     VARCHAR(64) NOT NULL,
    created_at_ms BIGINT      NOT NULL,
    PRIMARY KEY (user_id, device_id),
    CONSTRAINT devices_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The highest seq a device has acknowledged in a conversation.
CREATE TABLE device_cursors (
    user_id         BIGINT      NOT NULL,
    device_id       VARCHAR(64) NOT NULL,
    conversation_id VARCHAR(64) NOT NULL,
    seq             BIGINT      NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE files (
    id            VARCHAR(64)  NOT NULL,
    owner         BIGINT       NOT NULL,
    name          VARCHAR(255) NOT NULL,
    mime          VARCHAR(255) NOT NULL,
    size          BIGINT       NOT NULL,
    created_at_ms BIGINT       NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT files_owner FOREIGN KEY (owner) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
