//! `im chat`: an interactive chat in the terminal. Incoming messages and
//! receipts are printed as they come; stdin lines are commands or messages.

mod commands;
mod view;

use std::collections::HashMap;

use im_client::rest::User;
use im_client::{
    new_client_msg_id, ContentType, Event, ReceiptKind, RestClient, SendMessage, Session,
    SessionEvent, Target,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::output::{CliError, CliResult};
use super::Ctx;
use view::{Names, Recent};

/// Texts of my recent messages, remembered to label their receipts.
const REMEMBERED: usize = 1000;

/// Whether the chat goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// The chat's state: who I talk to, names, and what I sent.
struct Chat {
    rest: RestClient,
    link: Session,
    names: Names,
    current: Option<Target>,
    last_seq: HashMap<String, u64>,
    by_client_id: Recent<String, String>,
    by_msg_id: Recent<u64, String>,
}

/// Runs the chat until `/quit`, end of input, or the link closing.
pub async fn run(ctx: &Ctx) -> CliResult {
    let rest = ctx.authed()?;
    let me: User = rest.me().await?;
    let (link, mut events) = ctx.session().await?;
    let mut chat = Chat {
        rest,
        link: link.clone(),
        names: Names {
            me: me.id,
            ..Default::default()
        },
        current: None,
        last_seq: HashMap::new(),
        by_client_id: Recent::new(REMEMBERED),
        by_msg_id: Recent::new(REMEMBERED),
    };
    chat.load_names().await;
    println!(
        "connected as {} (device {}); /help for commands",
        me.name,
        ctx.device_id()
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let flow = tokio::select! {
            event = events.recv() => match event {
                Some(event) => chat.on_event(event).await,
                None => Flow::Quit,
            },
            line = lines.next_line() => match line {
                Ok(Some(line)) => chat.on_line(line.trim()).await,
                _ => Flow::Quit,
            },
        };
        if flow == Flow::Quit {
            break;
        }
    }
    // Show what the link already took before it closed (a no-op if it did).
    let closer = link.clone();
    tokio::spawn(async move { closer.close().await });
    while let Some(event) = events.recv().await {
        chat.on_event(event).await;
    }
    Ok(())
}

impl Chat {
    /// Names of friends and groups, for display.
    async fn load_names(&mut self) {
        if let Ok(friends) = self.rest.friends().await {
            for f in friends {
                self.names.users.insert(f.user_id, f.name);
            }
        }
        if let Ok(groups) = self.rest.groups().await {
            for g in groups {
                self.names.groups.insert(g.id, g.name);
            }
        }
    }

    /// Names of a group's members.
    async fn load_group(&mut self, group_id: u64) -> CliResult {
        let info = self.rest.group(group_id).await?;
        self.names.groups.insert(info.id, info.name);
        for m in info.members {
            self.names.users.insert(m.user_id, m.name);
        }
        Ok(())
    }

    fn current_conversation(&self) -> Option<String> {
        self.current.map(|t| t.conversation_id(self.names.me))
    }

    async fn on_event(&mut self, event: SessionEvent) -> Flow {
        let event = match event {
            SessionEvent::Link(event) => event,
            SessionEvent::Disconnected { message } => {
                println!("*** link dropped ({message}); reconnecting");
                return Flow::Continue;
            }
            SessionEvent::Reconnected => {
                println!("*** reconnected");
                return Flow::Continue;
            }
        };
        match event {
            Event::Message(m) => {
                if m.to_group != 0 && !self.names.users.contains_key(&m.from_user) {
                    let _ = self.load_group(m.to_group).await;
                }
                println!("{}", view::message_line(&self.names, &m));
                let seq = self.last_seq.entry(m.conversation_id.clone()).or_default();
                *seq = (*seq).max(m.seq);
                let is_current = self.current_conversation().as_deref() == Some(&m.conversation_id);
                if is_current && m.from_user != self.names.me {
                    self.mark_read(m.conversation_id, m.seq);
                }
            }
            Event::Receipt(r) => {
                if r.kind() == ReceiptKind::Sent {
                    if let Some(text) = self.by_client_id.remove(&r.client_msg_id) {
                        self.by_msg_id.insert(r.msg_id, text);
                    }
                }
                let text = self.by_msg_id.get(&r.msg_id).map(String::as_str);
                println!("{}", view::receipt_line(&self.names, &r, text));
            }
            Event::SyncDone {
                offline_count,
                synced_count,
            } => {
                let synced = match synced_count {
                    0 => String::new(),
                    n => format!(", {n} caught up"),
                };
                println!("--- {offline_count} offline messages{synced} ---");
            }
            Event::FriendRequest(f) => {
                self.names.users.insert(f.from_user, f.from_name.clone());
                let note = if f.note.is_empty() {
                    String::new()
                } else {
                    format!(": \"{}\"", f.note)
                };
                println!(
                    "* friend request #{} from {}{note}  (/accept {})",
                    f.request_id, f.from_name, f.request_id
                );
            }
            Event::Friend(f) => {
                self.names.users.insert(f.user_id, f.name.clone());
                println!("{}", view::friend_line(&f));
            }
            Event::Presence(p) => {
                let state = if p.online { "online" } else { "offline" };
                println!("* {} is {state}", self.names.user(p.user_id));
            }
            Event::Group(g) => println!("{}", view::group_line(&self.names, &g)),
            Event::Error(e) => println!("! error {}: {}", e.code().as_str_name(), e.message),
            Event::Closed { code, message } => {
                let code = code.map(|c| format!(" ({})", c.name())).unwrap_or_default();
                println!("*** link closed: {message}{code}");
                return Flow::Quit;
            }
        }
        Flow::Continue
    }

    /// Marks read in the background: the event loop must keep running.
    fn mark_read(&self, conversation_id: String, seq: u64) {
        let link = self.link.clone();
        tokio::spawn(async move {
            if let Err(e) = link.mark_read(conversation_id, seq).await {
                println!("! could not mark read: {e}");
            }
        });
    }

    async fn on_line(&mut self, line: &str) -> Flow {
        if line.is_empty() {
            return Flow::Continue;
        }
        if !line.starts_with('/') {
            self.send(line);
            return Flow::Continue;
        }
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let result = match command {
            "/quit" | "/exit" => return Flow::Quit,
            "/help" => {
                println!("{}", commands::HELP);
                Ok(())
            }
            "/to" => self.select_user(rest).await,
            "/group" => self.select_group(rest).await,
            "/friends" => self.list_friends().await,
            "/groups" => self.list_groups().await,
            "/requests" => self.list_requests().await,
            "/accept" => self.accept(rest).await,
            "/add" => self.add(rest).await,
            "/read" => self.read_current().await,
            "/history" => self.history().await,
            _ => Err(CliError::new(
                "USAGE",
                format!("unknown command {command}; try /help"),
            )),
        };
        if let Err(e) = result {
            println!("! {}: {}", e.code, e.message);
        }
        Flow::Continue
    }

    /// Sends a text to the current target in the background; its receipts
    /// show up as events.
    fn send(&mut self, text: &str) {
        let Some(target) = self.current else {
            println!("! pick a conversation first: /to NAME or /group ID");
            return;
        };
        let client_msg_id = new_client_msg_id();
        self.by_client_id
            .insert(client_msg_id.clone(), text.to_string());
        let message = SendMessage {
            client_msg_id,
            content_type: ContentType::Text as i32,
            text: text.to_string(),
            ..target.message()
        };
        let link = self.link.clone();
        tokio::spawn(async move {
            if let Err(e) = link.send(message).await {
                println!("! not sent: {}: {}", e.code(), e.message());
            }
        });
    }
}
