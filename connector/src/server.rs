//! The accept loop: caps links, backs off on accept errors, and on shutdown
//! stops accepting and drains the links within a deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::transport::Conn;
use crate::{link, Connector};

/// Where client links arrive.
pub struct Listeners {
    /// Length-prefixed frames over TCP.
    pub tcp: TcpListener,
    /// The same frames as WebSocket binary messages, if enabled.
    pub websocket: Option<TcpListener>,
}

/// Accepts client links until `shutdown` is cancelled, then waits (up to the
/// drain timeout, plus a grace second) for links to close.
pub async fn run(listeners: Listeners, ctx: Arc<Connector>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    if ctx.status.leases() {
        tracker.spawn(refresh_leases(ctx.clone(), shutdown.clone()));
    }
    let permits = Arc::new(Semaphore::new(ctx.config.max_links));
    let mut backoff = Duration::from_millis(5);
    loop {
        let (accepted, websocket) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listeners.tcp.accept() => (accepted, false),
            accepted = accept(&listeners.websocket) => (accepted, true),
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "link limit reached, refusing");
                    continue;
                };
                let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
                tracker.spawn(async move {
                    let max = ctx.config.max_frame_bytes;
                    let conn = if websocket {
                        // The upgrade counts against the login timeout.
                        // Boxed: the handshake's state is large and short-lived.
                        let upgrade = Box::pin(Conn::websocket(stream, max));
                        match tokio::time::timeout(ctx.config.login_timeout, upgrade).await {
                            Ok(Ok(conn)) => conn,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "websocket upgrade failed");
                                return;
                            }
                            Err(_) => return,
                        }
                    } else {
                        Conn::tcp(stream, max)
                    };
                    link::serve(conn, peer, ctx, shutdown).await;
                    drop(permit);
                });
            }
            Err(error) => {
                // Usually out of file descriptors: wait for links to close.
                tracing::warn!(%error, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listeners);
    tracker.close();
    let grace = ctx.config.drain_timeout + Duration::from_secs(1);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            links = tracker.len(),
            "links still open after drain timeout"
        );
    }
}

/// Accepts from `listener`, or never if there is none.
async fn accept(
    listener: &Option<TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Renews the user-status leases of every device on this connector, so that
/// if this process dies its devices expire and their messages go offline.
/// Devices the status backend had lost (a restarted Redis) are written back
/// and resynced: while they were missing, their messages were not pushed.
async fn refresh_leases(ctx: Arc<Connector>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.config.status_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let devices = ctx.registry.devices();
        match ctx
            .status
            .refresh(ctx.registry.connector_id(), &devices)
            .await
        {
            Ok(restored) => {
                if !restored.is_empty() {
                    tracing::warn!(
                        devices = restored.len(),
                        "user status had lost devices; written back and resynced"
                    );
                }
                for (user, device) in restored {
                    ctx.registry.resync(user, &device);
                }
            }
            Err(error) => {
                tracing::warn!(%error, devices = devices.len(), "lease refresh failed")
            }
        }
    }
}
