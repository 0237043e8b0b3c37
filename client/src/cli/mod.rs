//! The `im` command line: argument parsing, the shared context, dispatch.

mod account;
mod chat;
mod messaging;
mod output;
mod social;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use im_client::{Event, Link, LinkOptions, RestClient, Session, SessionEvent, SessionOptions};
use tokio::sync::mpsc;

use output::{error_json, CliError, CliResult};
use state::State;

/// Command-line client of the IM server. Every command but `listen` and
/// `chat` prints one JSON document; errors go to stderr as JSON, exit code 1.
#[derive(Debug, Parser)]
#[command(name = "im", version)]
struct Cli {
    /// Base URL of the REST API.
    #[arg(
        long,
        env = "IM_HTTP",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    http: String,
    /// Address of the link (connector).
    #[arg(long, env = "IM_LINK", default_value = "127.0.0.1:9000", global = true)]
    link: String,
    /// State file with the login and this device's id [default: ~/.im/state.json].
    #[arg(long, env = "IM_STATE", global = true)]
    state: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account.
    Register(Credentials),
    /// Log in and save the token in the state file.
    Login(Credentials),
    /// Revoke the token and forget it.
    Logout,
    /// Show the logged-in user.
    Whoami,
    /// Friends and friend requests.
    #[command(subcommand)]
    Friend(social::FriendCommand),
    /// Groups and their members.
    #[command(subcommand)]
    Group(social::GroupCommand),
    /// Send one message and print its SENT receipt.
    Send(messaging::SendArgs),
    /// Print link events as JSON Lines.
    Listen(messaging::ListenArgs),
    /// Mark a conversation read up to SEQ.
    Read {
        /// Conversation id (`u1-2`, `g3`).
        conversation_id: String,
        /// Last sequence read.
        seq: u64,
    },
    /// One page of a conversation's history.
    History {
        /// Conversation id (`u1-2`, `g3`).
        conversation_id: String,
        /// Only messages older than this sequence.
        #[arg(long)]
        before: Option<u64>,
        /// Page size.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Recent conversations with unread counts.
    Conversations,
    /// Upload a file.
    Upload {
        /// File to upload.
        path: PathBuf,
        /// MIME type [default: from the file extension].
        #[arg(long)]
        mime: Option<String>,
    },
    /// Download a file.
    Download {
        /// File id.
        file_id: String,
        /// Where to write it.
        path: PathBuf,
    },
    /// Interactive chat in the terminal.
    Chat,
}

/// A name and a password.
#[derive(Debug, Args)]
struct Credentials {
    /// Account name.
    name: String,
    /// Password [default: asked on stdin].
    #[arg(long, env = "IM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

/// What every command works with: endpoints and the state file.
pub struct Ctx {
    http: String,
    link: String,
    state_path: PathBuf,
    state: State,
}

impl Ctx {
    /// A REST client without a token.
    fn rest(&self) -> CliResult<RestClient> {
        Ok(RestClient::new(&self.http)?)
    }

    /// A REST client with the saved token.
    fn authed(&self) -> CliResult<RestClient> {
        Ok(self.rest()?.with_token(self.token()?))
    }

    fn token(&self) -> CliResult<&str> {
        self.state
            .token
            .as_deref()
            .ok_or_else(|| CliError::new("NOT_LOGGED_IN", "not logged in: run `im login NAME`"))
    }

    /// Connects and logs in the link as this state's device.
    async fn connect(&self) -> CliResult<(Link, mpsc::Receiver<Event>)> {
        let token = self.token()?;
        let options = LinkOptions::default();
        Ok(Link::connect(self.link.as_str(), token, &self.state.device_id, options).await?)
    }

    /// This device's id.
    fn device_id(&self) -> &str {
        &self.state.device_id
    }

    /// A link that reconnects and resends on its own (for `im chat`).
    async fn session(&self) -> CliResult<(Session, mpsc::Receiver<SessionEvent>)> {
        let token = self.token()?;
        let options = SessionOptions::default();
        Ok(Session::connect(self.link.as_str(), token, &self.state.device_id, options).await?)
    }

    fn save(&self) -> CliResult {
        self.state.save(&self.state_path)
    }
}

/// Parses the command line, runs the command, reports errors.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error_json(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> CliResult {
    let state_path = cli.state.unwrap_or_else(state::default_path);
    let state = State::load(&state_path)?;
    let mut ctx = Ctx {
        http: cli.http,
        link: cli.link,
        state_path,
        state,
    };
    match cli.command {
        Command::Register(c) => account::register(&ctx, &c.name, c.password).await,
        Command::Login(c) => account::login(&mut ctx, &c.name, c.password).await,
        Command::Logout => account::logout(&mut ctx).await,
        Command::Whoami => account::whoami(&ctx).await,
        Command::Friend(cmd) => social::friend(&ctx, cmd).await,
        Command::Group(cmd) => social::group(&ctx, cmd).await,
        Command::Send(args) => messaging::send(&ctx, args).await,
        Command::Listen(args) => messaging::listen(&ctx, args).await,
        Command::Read {
            conversation_id,
            seq,
        } => messaging::read(&ctx, &conversation_id, seq).await,
        Command::History {
            conversation_id,
            before,
            limit,
        } => messaging::history(&ctx, &conversation_id, before, limit).await,
        Command::Conversations => messaging::conversations(&ctx).await,
        Command::Upload { path, mime } => messaging::upload(&ctx, &path, mime).await,
        Command::Download { file_id, path } => messaging::download(&ctx, &file_id, &path).await,
        Command::Chat => chat::run(&ctx).await,
    }
}
