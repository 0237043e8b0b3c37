//! The bench's users, made over REST before any link opens: a pool of
//! accounts shared by the scenarios (registered and logged in once, in
//! parallel, since each costs the server two slow password hashes),
//! friendships between pool users `2i` and `2i + 1`, and groups of the
//! first `G` pool users.

use std::collections::HashMap;

use anyhow::Context as _;
use futures::{stream, StreamExt, TryStreamExt};
use im_client::RestClient;

use crate::progress::Progress;

/// Password of every bench account.
const PASSWORD: &str = "bench-password";

/// One account with a login token.
#[derive(Debug, Clone)]
pub struct Account {
    /// User id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Token from `POST /v1/sessions`.
    pub token: String,
}

/// Accounts of one run against one server.
pub struct Accounts {
    rest: RestClient,
    prefix: String,
    concurrency: usize,
    users: Vec<Account>,
    friend_pairs: usize,
    groups: HashMap<usize, u64>,
    extra: usize,
}

impl Accounts {
    /// No accounts yet, on the server at `http_url`. Names start with a
    /// prefix unique to this run; `concurrency` REST calls run at once.
    pub fn new(http_url: &str, concurrency: usize) -> anyhow::Result<Accounts> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        Ok(Accounts {
            rest: RestClient::new(http_url)?,
            prefix: format!("b{}", &run[..8]),
            concurrency: concurrency.max(1),
            users: Vec::new(),
            friend_pairs: 0,
            groups: HashMap::new(),
            extra: 0,
        })
    }

    /// The pool so far.
    pub fn users(&self) -> &[Account] {
        &self.users
    }

    /// A REST client acting as `account`.
    pub fn rest_as(&self, account: &Account) -> RestClient {
        self.rest.clone().with_token(&account.token)
    }

    /// Grows the pool to at least `n` accounts.
    pub async fn ensure(&mut self, n: usize, progress: &Progress) -> anyhow::Result<()> {
        if self.users.len() >= n {
            return Ok(());
        }
        let from = self.users.len();
        let bar = progress.bar((n - from) as u64, "registering users");
        let names: Vec<String> = (from..n).map(|i| format!("{}u{i}", self.prefix)).collect();
        let rest = &self.rest;
        let mut made: Vec<Account> = stream::iter(names)
            .map(|name| {
                let bar = bar.clone();
                async move {
                    let account = register(rest, name).await;
                    bar.inc(1);
                    account
                }
            })
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        bar.finish_and_clear();
        self.users.append(&mut made);
        Ok(())
    }

    /// Makes pool users `2i` and `2i + 1` friends for every `i < pairs`
    /// (growing the pool as needed).
    pub async fn befriend_pairs(
        &mut self,
        pairs: usize,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        self.ensure(2 * pairs, progress).await?;
        if self.friend_pairs >= pairs {
            return Ok(());
        }
        let bar = progress.bar((pairs - self.friend_pairs) as u64, "making friends");
        let this = &*self;
        this.each_counted(this.friend_pairs..pairs, &bar, |i| async move {
            this.befriend(&this.users[2 * i], &this.users[2 * i + 1])
                .await
        })
        .await?;
        self.friend_pairs = pairs;
        Ok(())
    }

    /// Runs `step` on every item, `concurrency` at a time, counting each
    /// one done on `bar` (cleared at the end); stops at the first error.
    async fn each_counted<I, F, Fut>(
        &self,
        items: I,
        bar: &indicatif::ProgressBar,
        step: F,
    ) -> anyhow::Result<()>
    where
        I: IntoIterator,
        F: Fn(I::Item) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        stream::iter(items)
            .map(|item| {
                let done = step(item);
                async move {
                    done.await?;
                    bar.inc(1);
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await?;
        bar.finish_and_clear();
        Ok(())
    }

    /// Makes `a` and `b` friends.
    pub async fn befriend(&self, a: &Account, b: &Account) -> anyhow::Result<()> {
        let request = self
            .rest_as(a)
            .send_friend_request(&b.name, "bench")
            .await
            .context("friend request")?;
        self.rest_as(b)
            .accept_friend_request(request.id)
            .await
            .context("accepting a friend request")?;
        Ok(())
    }

    /// The group of pool users `0..size`, created by user 0 (made once per
    /// size, growing the pool as needed).
    pub async fn group(&mut self, size: usize, progress: &Progress) -> anyhow::Result<u64> {
        if let Some(id) = self.groups.get(&size) {
            return Ok(*id);
        }
        self.ensure(size, progress).await?;
        let creator = &self.users[0];
        let id = self
            .rest_as(creator)
            .create_group(&format!("bench {size}"))
            .await
            .context("creating a group")?
            .id;
        let bar = progress.bar(size.saturating_sub(1) as u64, "joining the group");
        let this = &*self;
        this.each_counted(&this.users[1..size], &bar, |member| async move {
            this.rest_as(member)
                .join_group(id)
                .await
                .context("joining a group")
        })
        .await?;
        self.groups.insert(size, id);
        Ok(id)
    }

    /// A new account outside the pool, for a scenario that needs users no
    /// other scenario touched.
    pub async fn fresh(&mut self, tag: &str) -> anyhow::Result<Account> {
        self.extra += 1;
        let name = format!("{}{tag}{}", self.prefix, self.extra);
        register(&self.rest, name).await
    }
}

async fn register(rest: &RestClient, name: String) -> anyhow::Result<Account> {
    rest.register(&name, PASSWORD)
        .await
        .with_context(|| format!("registering {name}"))?;
    let session = rest
        .login(&name, PASSWORD)
        .await
        .with_context(|| format!("logging {name} in"))?;
    Ok(Account {
        id: session.user.id,
        name,
        token: session.token,
    })
}
