//! `im send`, `listen`, `read`, `history`, `conversations`, `upload`, `download`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgGroup, Args};
use im_client::rest::FileMeta;
use im_client::{
    new_client_msg_id, ContentType, Event, ReceiptKind, RestClient, SendMessage, Target,
};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use super::output::{event_json, print_json, print_line, receipt_json, CliError, CliResult};
use super::social::resolve_user;
use super::Ctx;

/// How long `listen` and `read` wait for their last acks when closing.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Arguments of `im send`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to", "group"])))]
pub struct SendArgs {
    /// Friend name (or user id).
    #[arg(long)]
    to: Option<String>,
    /// Group id.
    #[arg(long)]
    group: Option<u64>,
    /// Upload this file and send it (IMAGE for image/*, else FILE); TEXT is the caption.
    #[arg(long)]
    file: Option<PathBuf>,
    /// MIME type of --file [default: from the file extension].
    #[arg(long)]
    mime: Option<String>,
    /// Client message id, to resend the same message idempotently [default: a new UUID].
    #[arg(long)]
    client_msg_id: Option<String>,
    /// Seconds to wait for the SENT receipt.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// The text (the caption with --file).
    #[arg(required_unless_present = "file")]
    text: Option<String>,
}

/// Arguments of `im listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
    /// Stop after this many message events.
    #[arg(long)]
    count: Option<u64>,
    /// Mark every message received from someone else read.
    #[arg(long)]
    read: bool,
    /// Stop once the catch-up after login (offline messages and waiting
    /// receipts) is done.
    #[arg(long)]
    until_sync: bool,
}

/// `im send`: connects, sends, prints the SENT receipt, closes. Other events
/// that arrive meanwhile (catch-up) are reported on stderr as JSON Lines.
pub async fn send(ctx: &Ctx, args: SendArgs) -> CliResult {
    let rest = ctx.authed()?;
    let target = match (&args.to, args.group) {
        (Some(name), _) => Target::User(resolve_user(&rest, name).await?),
        (None, Some(group)) => Target::Group(group),
        (None, None) => return Err(CliError::new("BAD_REQUEST", "--to or --group is required")),
    };
    let text = args.text.unwrap_or_default();
    let mut message = match &args.file {
        Some(path) => {
            let meta = upload_path(&rest, path, args.mime).await?;
            let kind = if meta.mime.starts_with("image/") {
                ContentType::Image
            } else {
                ContentType::File
            };
            SendMessage {
                content_type: kind as i32,
                text,
                file: Some(meta.to_file_ref()),
                ..target.message()
            }
        }
        None => SendMessage {
            content_type: ContentType::Text as i32,
            text,
            ..target.message()
        },
    };
    message.client_msg_id = args.client_msg_id.unwrap_or_else(new_client_msg_id);
    let mine = message.client_msg_id.clone();

    let (link, events) = ctx.connect().await?;
    let side = tokio::spawn(report_events(events, Some(mine)));
    let result = timeout(Duration::from_secs(args.timeout), link.send(message)).await;
    link.close().await;
    let _ = side.await;
    match result {
        Ok(Ok(receipt)) => {
            print_json(&receipt_json(&receipt));
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(CliError::new(
            "TIMEOUT",
            "no SENT receipt in time; resend with the same --client-msg-id",
        )),
    }
}

/// Reports events of a one-shot command on stderr, until the link closes.
/// The SENT receipt of `skip_sent` is the command's own answer and skipped.
async fn report_events(mut events: mpsc::Receiver<Event>, skip_sent: Option<String>) {
    while let Some(event) = events.recv().await {
        let own_receipt = matches!(&event, Event::Receipt(r)
            if r.kind() == ReceiptKind::Sent && Some(&r.client_msg_id) == skip_sent.as_ref());
        let bookkeeping = matches!(
            event,
            Event::SyncDone { .. } | Event::Closed { code: None, .. }
        );
        if own_receipt || bookkeeping {
            continue;
        }
        eprintln!("{}", event_json(&event));
    }
}

/// `im listen`: prints events as JSON Lines until the time or count is up,
/// the link closes, or Ctrl-C.
pub async fn listen(ctx: &Ctx, args: ListenArgs) -> CliResult {
    let (link, mut events) = ctx.connect().await?;
    let deadline = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut messages = 0u64;
    let mut marks = Vec::new();
    let mut fatal = None;
    let mut open = true;
    while open && args.count.is_none_or(|n| messages < n) {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                print_line(&event_json(&event));
                match event {
                    Event::Message(m) => {
                        messages += 1;
                        if args.read && m.from_user != link.user_id() {
                            let link = link.clone();
                            marks.push(tokio::spawn(async move {
                                link.mark_read(m.conversation_id, m.seq).await
                            }));
                        }
                    }
                    Event::Closed { code, message } => {
                        fatal = code.map(|c| CliError::new(c.name(), message));
                        open = false;
                    }
                    Event::SyncDone { .. } if args.until_sync => break,
                    _ => {}
                }
            }
            _ = sleep_until_opt(deadline) => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if open {
        let _ = timeout(CLOSE_WAIT, futures::future::join_all(marks)).await;
        let closer = link.clone();
        tokio::spawn(async move { closer.close().await });
        // Print what the link already took (and acked) before it closed.
        while let Some(event) = events.recv().await {
            print_line(&event_json(&event));
        }
    }
    fatal.map_or(Ok(()), Err)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `im read`: marks a conversation read up to `seq` over the link.
pub async fn read(ctx: &Ctx, conversation_id: &str, seq: u64) -> CliResult {
    let (link, events) = ctx.connect().await?;
    let side = tokio::spawn(report_events(events, None));
    let result = timeout(CLOSE_WAIT, link.mark_read(conversation_id, seq)).await;
    link.close().await;
    let _ = side.await;
    match result {
        Ok(Ok(())) => {
            print_json(&json!({ "ok": true, "conversation_id": conversation_id, "seq": seq }));
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(CliError::new("TIMEOUT", "the server did not ack MarkRead")),
    }
}

/// `im history`: one page of a conversation.
pub async fn history(
    ctx: &Ctx,
    conversation_id: &str,
    before: Option<u64>,
    limit: Option<u32>,
) -> CliResult {
    let page = ctx
        .authed()?
        .messages(conversation_id, before, limit)
        .await?;
    print_json(&page);
    Ok(())
}

/// `im conversations`: recent conversations with unread counts.
pub async fn conversations(ctx: &Ctx) -> CliResult {
    print_json(&ctx.authed()?.conversations().await?);
    Ok(())
}

/// `im upload`: prints the stored file's metadata.
pub async fn upload(ctx: &Ctx, path: &Path, mime: Option<String>) -> CliResult {
    print_json(&upload_path(&ctx.authed()?, path, mime).await?);
    Ok(())
}

async fn upload_path(rest: &RestClient, path: &Path, mime: Option<String>) -> CliResult<FileMeta> {
    let bytes = tokio::fs::read(path).await?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    let mime = mime.unwrap_or_else(|| guess_mime(&name).to_string());
    Ok(rest.upload_file(&name, &mime, bytes).await?)
}

/// `im download`: writes the file and prints where.
pub async fn download(ctx: &Ctx, file_id: &str, path: &Path) -> CliResult {
    let bytes = ctx.authed()?.download_file(file_id).await?;
    tokio::fs::write(path, &bytes).await?;
    print_json(&json!({ "file_id": file_id, "path": path, "size": bytes.len() }));
    Ok(())
}

/// A MIME type from a file name's extension.
fn guess_mime(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("bmp") => "image/bmp",
        Some("svg") => "image/svg+xml",
        Some("txt" | "log") => "text/plain",
        Some("md") => "text/markdown",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        Some("zip") => "application/zip",
        Some("mp3") => "audio/mpeg",
        Some("mp4") => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_types_come_from_the_extension() {
        assert_eq!(guess_mime("cat.JPG"), "image/jpeg");
        assert_eq!(guess_mime("notes.txt"), "text/plain");
        assert_eq!(guess_mime("noext"), "application/octet-stream");
    }
}
