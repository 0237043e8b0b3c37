//! Between MySQL rows and the store's records: the text type every string
//! column decodes through, the message row every query that returns messages
//! shares, and the error numbers the backend reacts to. The conversions
//! shared with the SQLite backend live in `crate::convert`.

use sqlx::error::BoxDynError;
use sqlx::mysql::{MySqlDatabaseError, MySqlTypeInfo, MySqlValueRef};
use sqlx::{Decode, Encode, FromRow, MySql, QueryBuilder, Type};

pub(super) use crate::convert::{
    api_int, corrupt, is_unique_violation, message_columns, missing_reference, offline_row,
    parse_conversation, role_from_sql, sql_int, status_from_sql, status_to_sql, UnreadColumns,
    MESSAGE_ROW,
};
use crate::types::{FileRef, StoredMessage};
use crate::StoreError;

/// Rows (or listed values) per multi-row statement: at 13 placeholders a
/// row at most, far under the 65,535 a statement may carry, and one
/// statement still covers an offline page or a worker batch.
pub(super) const ROWS_PER_STATEMENT: usize = 1_000;

/// Most values of an `IN` list. From 1,000 values on, MariaDB turns the
/// list into a join against a table of them
/// (`in_predicate_conversion_threshold`), which visits the rows in that
/// table's order, not the key's; a locking read must take its locks in key
/// order, or two transactions can deadlock.
pub(super) const IN_VALUES: usize = 999;

/// Most points of a [`push_any_of`] list (two values each).
pub(super) const IN_POINTS: usize = IN_VALUES / 2;

/// Appends `(?, ?, …)`, binding `values`: the list of an `IN`.
pub(super) fn push_list<'a, T>(
    query: &mut QueryBuilder<'a, MySql>,
    values: impl IntoIterator<Item = T>,
) where
    T: 'a + Encode<'a, MySql> + Type<MySql>,
{
    query.push("(");
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    query.push(")");
}

/// Appends `(a, b) IN ((?, ?), …)`: points on a two-column unique key.
/// Shorter than the same points written `(a = ? AND b = ?) OR …`, and
/// planned about 1.7x faster in a test of 100 points (text protocol).
///
/// The statement must name the key (`FORCE INDEX`) when another index of
/// the table starts with either column (a foreign key's, say): MariaDB's range
/// optimizer then weighs an index merge of the two for every point, in time
/// that grows with the square of the points. Prepared, on this schema, 499
/// points of `receipts` took 195 ms that way against 4.5 ms with the key
/// named, and 999 points 491 against 5.7 ms.
pub(super) fn push_any_of<'a, A, B>(
    query: &mut QueryBuilder<'a, MySql>,
    (a, b): (&str, &str),
    pairs: impl IntoIterator<Item = (A, B)>,
) where
    A: 'a + Encode<'a, MySql> + Type<MySql>,
    B: 'a + Encode<'a, MySql> + Type<MySql>,
{
    query.push(format_args!("({a}, {b}) IN "));
    query.push_tuples(pairs, |mut point, (x, y)| {
        point.push_bind(x).push_bind(y);
    });
}

/// Deadlock found when trying to get lock; the transaction was rolled back.
const ER_LOCK_DEADLOCK: u16 = 1213;
/// Lock wait timeout exceeded.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// A string column. The schema collates text `utf8mb4_bin`, and MySQL flags
/// such columns BINARY, which sqlx's `String` refuses to decode; the bytes
/// are UTF-8 all the same.
pub(super) struct Text(pub(super) String);

impl From<Text> for String {
    fn from(text: Text) -> String {
        text.0
    }
}

impl Type<MySql> for Text {
    fn type_info() -> MySqlTypeInfo {
        <str as Type<MySql>>::type_info()
    }

    fn compatible(ty: &MySqlTypeInfo) -> bool {
        <str as Type<MySql>>::compatible(ty) || <[u8] as Type<MySql>>::compatible(ty)
    }
}

impl<'r> Decode<'r, MySql> for Text {
    fn decode(value: MySqlValueRef<'r>) -> Result<Text, BoxDynError> {
        <&str as Decode<MySql>>::decode(value).map(|text| Text(text.to_owned()))
    }
}

/// One row of `messages`, as [`message_columns!`] selects it.
#[derive(FromRow)]
pub(super) struct MessageRow {
    msg_id: i64,
    conversation_id: Text,
    seq: i64,
    from_user: i64,
    to_user: i64,
    to_group: i64,
    client_msg_id: Text,
    content_type: i32,
    text: Text,
    file_id: Option<Text>,
    file_name: Option<Text>,
    file_mime: Option<Text>,
    file_size: Option<i64>,
    sent_at_ms: i64,
}

impl From<MessageRow> for StoredMessage {
    fn from(row: MessageRow) -> StoredMessage {
        let file = row.file_id.map(|file_id| FileRef {
            file_id: file_id.0,
            name: row.file_name.map(String::from).unwrap_or_default(),
            mime: row.file_mime.map(String::from).unwrap_or_default(),
            size: api_int(row.file_size.unwrap_or(0)),
        });
        StoredMessage {
            msg_id: api_int(row.msg_id),
            conversation_id: row.conversation_id.0,
            seq: api_int(row.seq),
            from_user: api_int(row.from_user),
            to_user: api_int(row.to_user),
            to_group: api_int(row.to_group),
            client_msg_id: row.client_msg_id.0,
            content_type: row.content_type,
            text: row.text.0,
            file,
            sent_at_ms: api_int(row.sent_at_ms),
        }
    }
}

/// The server's error number, if `error` is an error the server reported.
fn error_number(error: &StoreError) -> Option<u16> {
    match error {
        StoreError::Database(sqlx::Error::Database(e)) => e
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// True if `error` undid (deadlock) or gave up on (lock wait timeout) a
/// transaction that may well succeed when run again.
pub(super) fn is_lock_failure(error: &StoreError) -> bool {
    matches!(
        error_number(error),
        Some(ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT)
    )
}

/// True if `error` is a UNIQUE or PRIMARY KEY failure, as a [`StoreError`].
pub(super) fn is_duplicate(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(e) if is_unique_violation(e))
}
