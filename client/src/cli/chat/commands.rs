//! The slash commands of `im chat` that talk to the REST API.

use im_client::rest::RequestStatus;
use im_client::Target;

use super::Chat;
use crate::cli::output::{CliError, CliResult};
use crate::cli::social::resolve_user;

/// What `/help` prints.
pub const HELP: &str = "\
commands:
  /to NAME          chat with a friend
  /group ID         chat in a group
  /friends          list friends
  /groups           list my groups
  /requests         pending friend requests
  /accept ID        accept a friend request
  /add NAME [note]  send a friend request
  /read             mark the current conversation read
  /history          the last messages of the current conversation
  /help             this help
  /quit             leave (also Ctrl-D)
anything else is sent to the current conversation";

impl Chat {
    pub(super) async fn select_user(&mut self, name: &str) -> CliResult {
        if name.is_empty() {
            return Err(CliError::new("USAGE", "/to NAME"));
        }
        let id = resolve_user(&self.rest, name).await?;
        self.names
            .users
            .entry(id)
            .or_insert_with(|| name.to_string());
        self.current = Some(Target::User(id));
        println!("now chatting with {}", self.names.user(id));
        Ok(())
    }

    pub(super) async fn select_group(&mut self, id: &str) -> CliResult {
        let id: u64 = id
            .parse()
            .map_err(|_| CliError::new("USAGE", "/group ID (a number)"))?;
        self.load_group(id).await?;
        self.current = Some(Target::Group(id));
        println!("now chatting in {}", self.names.group(id));
        Ok(())
    }

    pub(super) async fn list_friends(&mut self) -> CliResult {
        let friends = self.rest.friends().await?;
        if friends.is_empty() {
            println!("no friends yet: /add NAME");
        }
        for f in friends {
            let remark = f
                .remark
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let online = if f.online { "online" } else { "offline" };
            println!("  {}{remark} [id {}] {online}", f.name, f.user_id);
            self.names.users.insert(f.user_id, f.name);
        }
        Ok(())
    }

    pub(super) async fn list_groups(&mut self) -> CliResult {
        let groups = self.rest.groups().await?;
        if groups.is_empty() {
            println!("no groups yet");
        }
        for g in groups {
            println!("  {} {}", g.id, g.name);
            self.names.groups.insert(g.id, g.name);
        }
        Ok(())
    }

    pub(super) async fn list_requests(&mut self) -> CliResult {
        let requests = self.rest.friend_requests().await?;
        let pending: Vec<_> = requests
            .into_iter()
            .filter(|r| r.status == RequestStatus::Pending)
            .collect();
        if pending.is_empty() {
            println!("no pending requests");
        }
        for r in pending {
            let note = if r.note.is_empty() {
                String::new()
            } else {
                format!(": \"{}\"", r.note)
            };
            if r.to_user == self.names.me {
                println!("  #{} from {}{note}  (/accept {})", r.id, r.from_name, r.id);
            } else {
                println!("  #{} to {}{note} (waiting)", r.id, r.to_name);
            }
        }
        Ok(())
    }

    pub(super) async fn accept(&mut self, id: &str) -> CliResult {
        let id: u64 = id
            .parse()
            .map_err(|_| CliError::new("USAGE", "/accept ID (a number)"))?;
        let request = self.rest.accept_friend_request(id).await?;
        self.names
            .users
            .insert(request.from_user, request.from_name.clone());
        println!(
            "* {} is now your friend: /to {}",
            request.from_name, request.from_name
        );
        Ok(())
    }

    pub(super) async fn add(&mut self, args: &str) -> CliResult {
        let (name, note) = args.split_once(' ').unwrap_or((args, ""));
        if name.is_empty() {
            return Err(CliError::new("USAGE", "/add NAME [note]"));
        }
        let request = self.rest.send_friend_request(name, note.trim()).await?;
        println!(
            "* friend request #{} sent to {}",
            request.id, request.to_name
        );
        Ok(())
    }

    pub(super) async fn read_current(&mut self) -> CliResult {
        let conversation = self
            .current_conversation()
            .ok_or_else(|| CliError::new("USAGE", "no current conversation"))?;
        let mut seq = self.last_seq.get(&conversation).copied().unwrap_or(0);
        if let Ok(list) = self.rest.conversations().await {
            if let Some(c) = list.iter().find(|c| c.id == conversation) {
                seq = seq.max(c.last_seq);
            }
        }
        if seq == 0 {
            println!("nothing to mark read");
            return Ok(());
        }
        self.mark_read(conversation, seq);
        println!("* marked read up to {seq}");
        Ok(())
    }

    pub(super) async fn history(&mut self) -> CliResult {
        let conversation = self
            .current_conversation()
            .ok_or_else(|| CliError::new("USAGE", "no current conversation"))?;
        let page = self.rest.messages(&conversation, None, Some(20)).await?;
        println!(
            "--- history of {} ---",
            self.names.conversation(&conversation)
        );
        let mut messages = page.messages;
        messages.sort_by_key(|m| m.seq);
        for m in messages {
            let text = match &m.file {
                Some(f) => format!(
                    "[{} {} id={}] {}",
                    m.content_type.as_str(),
                    f.name,
                    f.file_id,
                    m.text
                ),
                None => m.text.clone(),
            };
            println!(
                "  {:>4} {}: {}",
                m.seq,
                self.names.user(m.from_user),
                text.trim_end()
            );
        }
        println!("---");
        Ok(())
    }
}
