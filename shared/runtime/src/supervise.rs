//! In-process restarts: a service whose RabbitMQ connection drops ends its
//! run (every unacked delivery returns to its queue) and is built and run
//! again, with backoff, until a shutdown signal.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::shutdown::{shutdown_signal, Shutdown};

/// Why one run of a service ended with an error.
enum Stop {
    /// It could not start: connecting or declaring failed.
    Build(anyhow::Error),
    /// It ran and then stopped on an error (a lost connection).
    Run(anyhow::Error),
}

/// The first pause before a restart; it doubles up to [`MAX_BACKOFF`] and
/// starts over after a run that lasted [`STABLE_RUN`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(15);
const STABLE_RUN: Duration = Duration::from_secs(60);

/// Builds the service from `settings` and runs it, until it returns
/// `Ok` (a shutdown) or SIGTERM/Ctrl-C arrives — also while it is still
/// connecting. A failure to start the very first time ends the process (a
/// bad setting should not loop); every later failure restarts it.
pub async fn supervise<S, A, B, BF, R, RF>(
    service: &str,
    settings: S,
    build: B,
    run: R,
) -> anyhow::Result<()>
where
    S: Clone,
    B: Fn(S) -> BF,
    BF: Future<Output = anyhow::Result<A>>,
    R: Fn(A, Shutdown) -> RF,
    RF: Future<Output = anyhow::Result<()>>,
{
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.trigger();
    });
    let run_once = |shutdown: Shutdown| {
        let built = build(settings.clone());
        let run = &run;
        async move {
            let app = tokio::select! {
                app = built => app
                    .with_context(|| format!("Failed to start {service}"))
                    .map_err(Stop::Build)?,
                _ = shutdown.wait() => return Ok(()),
            };
            run(app, shutdown).await.map_err(Stop::Run)
        }
    };
    let mut started_once = false;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let began = Instant::now();
        let error = match run_once(shutdown.clone()).await {
            Ok(()) => return Ok(()),
            Err(Stop::Build(e)) if !started_once => return Err(e),
            Err(Stop::Build(e)) => e,
            Err(Stop::Run(e)) => {
                started_once = true;
                e
            }
        };
        if shutdown.is_triggered() {
            return Ok(());
        }
        if began.elapsed() >= STABLE_RUN {
            backoff = FIRST_BACKOFF;
        }
        metrics::counter!("herald_restarts_total").increment(1);
        tracing::warn!(service, error = %format!("{error:#}"), restart_in_ms = backoff.as_millis() as u64, "The service stopped on an error; restarting.");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
