use std::future::Future;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

/// Whether a service can take work now (its connections are up).
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// `/metrics` (Prometheus), `/healthz` (the process runs) and `/readyz`
/// (its dependencies are reachable), merged into each service's router.
pub fn ops_router(ready: Readiness) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async { herald_telemetry::render_metrics() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready() {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains
/// open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Small answers go out at once, not after the client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
