//! A database of its own for each MySQL test, on the server
//! `IM_TEST_MYSQL_URL` names: created empty, dropped at the end of the test,
//! and dropped too when the test panics.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Executor};

/// The server the tests use when `IM_TEST_MYSQL_URL` is not set.
const DEFAULT_SERVER: &str = "mysql://root@127.0.0.1:3306";
/// How long the server has to answer before the test fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A test database; see the module doc.
pub struct TestDatabase {
    server: String,
    name: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates `im_test_<random hex>` on the test server. Panics, naming the
    /// server, if it does not answer: a missing server fails the MySQL tests
    /// rather than skipping them.
    pub async fn create() -> TestDatabase {
        let server = std::env::var("IM_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_SERVER.into());
        let name = format!("im_test_{:016x}", rand::random::<u64>());
        let mut admin = admin_connection(&server).await;
        admin
            .execute(&*format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        admin.close().await.ok();
        TestDatabase {
            server,
            name,
            dropped: false,
        }
    }

    /// The URL of this database.
    pub fn url(&self) -> String {
        with_database(&self.server, &self.name)
    }

    /// How many connections use this database now.
    pub async fn connections(&self) -> i64 {
        let mut admin = admin_connection(&self.server).await;
        let count =
            sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ?")
                .bind(&self.name)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        admin.close().await.ok();
        count
    }

    /// Drops the database; every connection to it must be closed already.
    pub async fn drop_now(mut self) {
        let mut admin = admin_connection(&self.server).await;
        admin
            .execute(&*format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .await
            .unwrap_or_else(|e| panic!("cannot drop test database {}: {e}", self.name));
        admin.close().await.ok();
        self.dropped = true;
    }
}

/// The test is panicking (or forgot `drop_now`). Connections of the failed
/// test may still be open, some inside a transaction that holds locks the
/// DROP would wait for: they are killed first. The test's runtime may be
/// the one unwinding, so the cleanup runs on a thread with a runtime of its
/// own.
impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (server, name) = (self.server.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            runtime.block_on(kill_and_drop(&server, &name))
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test database {} leaked: {e}", self.name),
            Err(_) => eprintln!("test database {} leaked: cleanup panicked", self.name),
        }
    }
}

/// Kills the connections using `name`, then drops it.
async fn kill_and_drop(server: &str, name: &str) -> sqlx::Result<()> {
    let options = MySqlConnectOptions::from_str(server)?;
    let mut admin = tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(&options))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    let users: Vec<i64> = sqlx::query_scalar(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
    )
    .bind(name)
    .fetch_all(&mut admin)
    .await?;
    for id in users {
        // Gone already is fine: it may have ended on its own.
        admin.execute(&*format!("KILL {id}")).await.ok();
    }
    admin
        .execute(&*format!("DROP DATABASE IF EXISTS `{name}`"))
        .await?;
    admin.close().await
}

/// A connection to the test server itself, or a panic saying which server
/// did not answer and how to start one.
async fn admin_connection(server: &str) -> MySqlConnection {
    let options = MySqlConnectOptions::from_str(server)
        .unwrap_or_else(|e| panic!("IM_TEST_MYSQL_URL is not a MySQL URL: {e}"));
    let answer =
        tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(&options)).await;
    let failure = match answer {
        Ok(Ok(conn)) => return conn,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer in {CONNECT_TIMEOUT:?}"),
    };
    panic!(
        "the MySQL tests need a MySQL or MariaDB server: {}@{}:{} did not let us in ({failure}). \
         Run scripts/ensure-mariadb.sh, or point IM_TEST_MYSQL_URL at a server.",
        options.get_username(),
        options.get_host(),
        options.get_port(),
    );
}

/// `server` (a URL without a database) with the database `name`.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server, String::new()),
    };
    let authority = base.find("://").map_or(0, |at| at + 3);
    let end = base[authority..]
        .find('/')
        .map_or(base.len(), |at| authority + at);
    format!("{}/{name}{query}", &base[..end])
}

#[test]
fn the_database_replaces_any_path_and_keeps_the_query() {
    assert_eq!(
        with_database("mysql://root@127.0.0.1:3306", "t"),
        "mysql://root@127.0.0.1:3306/t"
    );
    assert_eq!(
        with_database("mysql://u:p@db:1/other?ssl-mode=disabled", "t"),
        "mysql://u:p@db:1/t?ssl-mode=disabled"
    );
}
