//! How `im chat` shows things: names for ids and one line per event.

use std::collections::{HashMap, VecDeque};

use im_client::{
    ChatMessage, ContentType, FriendEvent, FriendEventKind, GroupEvent, GroupEventKind, Receipt,
    ReceiptKind,
};

/// Display names of users and groups, as far as they are known.
#[derive(Debug, Default)]
pub struct Names {
    /// This user's id.
    pub me: u64,
    /// User id to name.
    pub users: HashMap<u64, String>,
    /// Group id to name.
    pub groups: HashMap<u64, String>,
}

impl Names {
    /// A user's name, `me` for this user, or `user#id`.
    pub fn user(&self, id: u64) -> String {
        if id == self.me {
            return "me".to_string();
        }
        self.users
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("user#{id}"))
    }

    /// `#name` (or `#g3`) for a group.
    pub fn group(&self, id: u64) -> String {
        match self.groups.get(&id) {
            Some(name) => format!("#{name}"),
            None => format!("#g{id}"),
        }
    }

    /// `@peer` for a direct conversation, `#group` for a group one.
    pub fn conversation(&self, conversation_id: &str) -> String {
        if let Some(group) = conversation_id
            .strip_prefix('g')
            .and_then(|g| g.parse().ok())
        {
            return self.group(group);
        }
        let peer = conversation_id
            .strip_prefix('u')
            .and_then(|pair| pair.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .map(|(a, b)| if a == self.me { b } else { a });
        match peer {
            Some(peer) => format!("@{}", self.user(peer)),
            None => conversation_id.to_string(),
        }
    }
}

/// A message's content in one line: text, or a file with its caption.
pub fn content(m: &ChatMessage) -> String {
    let kind = ContentType::try_from(m.content_type).unwrap_or(ContentType::Text);
    match (&m.file, kind) {
        (Some(f), ContentType::Image | ContentType::File) => {
            let what = if kind == ContentType::Image {
                "image"
            } else {
                "file"
            };
            let caption = if m.text.is_empty() {
                String::new()
            } else {
                format!(" {}", m.text)
            };
            format!(
                "[{what} {} ({} bytes) id={}]{caption}",
                f.name, f.size, f.file_id
            )
        }
        _ => m.text.clone(),
    }
}

/// `[@bob] bob: hello`, marked `(offline)` during catch-up.
pub fn message_line(names: &Names, m: &ChatMessage) -> String {
    let offline = if m.offline { " (offline)" } else { "" };
    format!(
        "[{}]{offline} {}: {}",
        names.conversation(&m.conversation_id),
        names.user(m.from_user),
        content(m)
    )
}

/// `  ✓✓ read by bob: "hello"`; `text` is the message when known.
pub fn receipt_line(names: &Names, r: &Receipt, text: Option<&str>) -> String {
    let what = match text {
        Some(text) => format!("\"{}\"", shorten(text)),
        None => format!("msg #{}", r.msg_id),
    };
    match r.kind() {
        ReceiptKind::Sent => format!("  ✓ sent {what} (seq {})", r.seq),
        ReceiptKind::Delivered => format!("  ✓✓ delivered to {}: {what}", names.user(r.by_user)),
        ReceiptKind::Read => format!("  ✓✓ read by {}: {what}", names.user(r.by_user)),
        ReceiptKind::Unspecified => format!("  ? receipt for {what}"),
    }
}

/// `* bob accepted your friend request` and the like.
pub fn friend_line(f: &FriendEvent) -> String {
    match f.kind() {
        FriendEventKind::Accepted => format!("* {} is now your friend", f.name),
        FriendEventKind::Rejected => format!("* {} rejected your friend request", f.name),
        FriendEventKind::Removed => format!("* {} is no longer your friend", f.name),
        FriendEventKind::Unspecified => format!("* friendship with {} changed", f.name),
    }
}

/// `* bob joined #team` and the like.
pub fn group_line(names: &Names, g: &GroupEvent) -> String {
    let (user, group) = (names.user(g.user_id), names.group(g.group_id));
    match g.kind() {
        GroupEventKind::Joined => format!("* {user} joined {group}"),
        GroupEventKind::Left => format!("* {user} left {group}"),
        GroupEventKind::Kicked => format!("* {user} was removed from {group}"),
        GroupEventKind::Dissolved => format!("* {group} was dissolved"),
        GroupEventKind::Unspecified => format!("* {group} changed"),
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}…")
}

/// A map that forgets its oldest entries past a capacity.
#[derive(Debug)]
pub struct Recent<K, V> {
    capacity: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: std::hash::Hash + Eq + Clone, V> Recent<K, V> {
    /// Keeps at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Recent {
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Adds an entry, dropping the oldest when full.
    pub fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    /// Looks an entry up.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// Takes an entry out.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_client::FileRef;

    fn names() -> Names {
        let mut names = Names {
            me: 1,
            ..Default::default()
        };
        names.users.insert(2, "bob".into());
        names.groups.insert(3, "team".into());
        names
    }

    #[test]
    fn conversations_are_labelled_by_peer_or_group() {
        let names = names();
        assert_eq!(names.conversation("u1-2"), "@bob");
        assert_eq!(names.conversation("u1-9"), "@user#9");
        assert_eq!(names.conversation("g3"), "#team");
        assert_eq!(names.conversation("g4"), "#g4");
        assert_eq!(names.conversation("weird"), "weird");
    }

    #[test]
    fn messages_and_receipts_read_naturally() {
        let names = names();
        let m = ChatMessage {
            conversation_id: "u1-2".into(),
            from_user: 2,
            text: "hello".into(),
            offline: true,
            ..Default::default()
        };
        assert_eq!(message_line(&names, &m), "[@bob] (offline) bob: hello");
        let image = ChatMessage {
            content_type: ContentType::Image as i32,
            file: Some(FileRef {
                file_id: "f1".into(),
                name: "cat.png".into(),
                size: 3,
                ..Default::default()
            }),
            ..m
        };
        assert_eq!(content(&image), "[image cat.png (3 bytes) id=f1] hello");
        let read = Receipt {
            kind: ReceiptKind::Read as i32,
            by_user: 2,
            msg_id: 7,
            ..Default::default()
        };
        assert_eq!(
            receipt_line(&names, &read, Some("hi")),
            "  ✓✓ read by bob: \"hi\""
        );
        assert_eq!(
            receipt_line(&names, &read, None),
            "  ✓✓ read by bob: msg #7"
        );
    }

    #[test]
    fn recent_forgets_the_oldest() {
        let mut recent = Recent::new(2);
        recent.insert(1, "a");
        recent.insert(2, "b");
        recent.insert(3, "c");
        assert_eq!(recent.get(&1), None);
        assert_eq!(recent.get(&3), Some(&"c"));
    }
}
