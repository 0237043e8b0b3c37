//! The people of a run: accounts, friendships and groups, made over REST
//! before any link opens, and where each user may write.

use im_client::{ClientError, RestClient, Target};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::ledger::User;
use super::RunConfig;

/// Seeds the group memberships apart from every other choice of a run.
const GROUP_STREAM: u64 = 0x6709;

/// Where a user may write: a target, its conversation and its recipients.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) target: Target,
    pub(crate) conversation: String,
    /// Recipient users (indexes into `Roster::users`), never the writer.
    pub(crate) recipients: Vec<usize>,
}

/// The accounts and groups of a run.
pub(crate) struct Roster {
    pub(crate) users: Vec<User>,
    /// Each user's login token.
    pub(crate) tokens: Vec<String>,
    /// Each group's id and members (user indexes).
    pub(crate) groups: Vec<(u64, Vec<usize>)>,
}

impl Roster {
    /// Registers the users, makes them all friends, and builds the groups:
    /// group `g` is created by user `g mod users` and joined by a random
    /// subset of the others, so groups have at least three members and
    /// differ in who they hold.
    pub(crate) async fn enrol(http: &str, config: &RunConfig) -> Result<Roster, ClientError> {
        let n = config.users;
        let (mut users, mut tokens, mut rests) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let rest = RestClient::new(http)?;
            let name = format!("{}{i}", config.name_prefix);
            rest.register(&name, "password-1").await?;
            let session = rest.login(&name, "password-1").await?;
            users.push(User {
                id: session.user.id,
                name,
            });
            rests.push(rest.with_token(&session.token));
            tokens.push(session.token);
        }
        for i in 0..n {
            for j in i + 1..n {
                let request = rests[i].send_friend_request(&users[j].name, "hi").await?;
                rests[j].accept_friend_request(request.id).await?;
            }
        }
        let mut rng = StdRng::seed_from_u64(config.seed ^ GROUP_STREAM);
        let mut groups = Vec::new();
        for g in 0..config.groups {
            let creator = g % n;
            let mut members: Vec<usize> = (0..n).filter(|u| *u != creator).collect();
            members.shuffle(&mut rng);
            members.truncate(rng.gen_range(2.min(n - 1)..n));
            let id = rests[creator].create_group(&format!("group {g}")).await?.id;
            for member in &members {
                rests[*member].join_group(id).await?;
            }
            members.push(creator);
            members.sort_unstable();
            groups.push((id, members));
        }
        Ok(Roster {
            users,
            tokens,
            groups,
        })
    }

    /// Where user `me` may write: to each friend, and to each of its groups.
    pub(crate) fn routes(&self, me: usize) -> (Vec<Route>, Vec<Route>) {
        let my_id = self.users[me].id;
        let route = |target: Target, recipients: Vec<usize>| Route {
            target,
            conversation: target.conversation_id(my_id),
            recipients,
        };
        let friends = (0..self.users.len())
            .filter(|u| *u != me)
            .map(|u| route(Target::User(self.users[u].id), vec![u]))
            .collect();
        let groups = self
            .groups
            .iter()
            .filter(|(_, members)| members.contains(&me))
            .map(|(id, members)| {
                let others = members.iter().copied().filter(|u| *u != me).collect();
                route(Target::Group(*id), others)
            })
            .collect();
        (friends, groups)
    }
}
