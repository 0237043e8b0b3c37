//! `im-server`: parse config, install signal handling, serve until Ctrl-C or
//! SIGTERM, then shut down in order.

use clap::Parser;
use im_server::{Config, Role};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc. A message's buffers are made on one
/// thread and freed on another (the link's task, the writer thread, the
/// router), which glibc pays for in `malloc_consolidate` and
/// `unlink_chunk`: allocation was about a quarter of the runtime workers'
/// samples in chat with 1,000 pairs. Alternate runs of one build pair
/// (1,000 pairs, 10 s at saturation): 36,850 / 37,855 / 33,480 ->
/// 39,609 / 39,848 / 35,489 msg/s with server CPU 154-156% -> 135-137%;
/// 19,000 idle links held 3.56 -> 3.42-3.43 KiB of RSS each. (mimalloc,
/// tried earlier, had cost idle links RSS: docs/DESIGN.md.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    if let Err(message) = config.validate() {
        eprintln!("im-server: {message}");
        std::process::exit(2);
    }
    if config.role != Role::All {
        let node = im_server::start_node(config).await?;
        let addr = |what: &str, a: Option<std::net::SocketAddr>| {
            a.map(|a| format!(" {what} {a}")).unwrap_or_default()
        };
        println!(
            "im-server: {:?} up:{}{}{}{} (Ctrl-C to stop)",
            node.role,
            addr("REST on", node.http_addr),
            addr("links on", node.link_addr),
            addr("WebSocket on", node.ws_addr),
            addr("internal links on", node.transfer_addr),
        );
        wait_for_signal().await;
        tracing::info!("shutting down");
        node.shutdown().await;
        return Ok(());
    }
    let server = im_server::start(config).await?;
    println!(
        "im-server: REST on {}, links on {} (WebSocket on {}) (Ctrl-C to stop)",
        server.http_url(),
        server.link_addr,
        server.ws_addr
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
