//! `im`: the command-line client of the IM server. Thin: everything lives in
//! the `cli` modules (src/cli/), which use the `im_client` library.

#[path = "../cli/mod.rs"]
mod cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::main().await
}
