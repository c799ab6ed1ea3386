//! `serve`: the web console on the store, on loopback unless `--bind` says otherwise;
//! `--follow` also runs the read models here (live status, and `--allow-resume`).

use std::net::SocketAddr;

use anyhow::Context as _;
use es_console::{Console, ConsoleOptions};
use order_example::console::OrderConsole;

use super::Context;

/// What `serve` is asked to do.
pub struct ServeOptions {
    /// The address to listen on.
    pub bind: SocketAddr,
    /// Run the projection daemon in this process.
    pub follow: bool,
    /// Offer to resume parked read models (needs `follow`).
    pub allow_resume: bool,
}

/// Serves the console until Ctrl-C.
pub async fn serve(context: &Context, options: ServeOptions) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .with_context(|| format!("cannot listen on {}", options.bind))?;
    let address = listener.local_addr()?;
    let mut app = OrderConsole::new(context.store.clone(), context.initial_stock);
    let daemon = if options.follow {
        let daemon = OrderConsole::<super::Store>::daemon_builder(context.initial_stock)?
            .start(context.store.clone())
            .await
            .context("cannot start the projection daemon")?;
        app = app.with_daemon(daemon.client());
        Some(daemon)
    } else {
        None
    };
    if !address.ip().is_loopback() {
        eprintln!(
            "warning: the console listens on {address}, reachable from other machines; it has no authentication"
        );
    }
    println!(
        "console of {} on http://{address}/ (Ctrl-C stops)",
        context.store
    );
    if options.follow {
        println!(
            "read models run here{}",
            if options.allow_resume {
                "; parked ones can be resumed from the page"
            } else {
                ""
            }
        );
    }
    let console = Console::new(
        app,
        ConsoleOptions::new().with_allow_resume(options.allow_resume),
    );
    let shutdown = async {
        // An error here means Ctrl-C cannot be caught: then only a kill stops the server.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let served = console
        .serve(listener, shutdown)
        .await
        .context("the console failed");
    if let Some(daemon) = daemon {
        daemon
            .shutdown()
            .await
            .context("the projection daemon failed")?;
    }
    served
}
