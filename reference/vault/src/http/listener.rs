//! Serving a router on a TCP listener, over TLS or plain HTTP on loopback (`spec/vault.md`
//! §9.1): HTTP/1.1 by hyper, with the bounds a server on a network needs. A connection that
//! has not finished its TLS handshake, or the headers of a request, within
//! [`ServeOptions::header_read_timeout`] is closed; a request whose answer is not ready within
//! [`ServeOptions::request_timeout`] (a body sent slowly included) gets 408; at most
//! [`ServeOptions::max_connections`] are open at once, and a connection past the cap is closed
//! at once. SIGINT and SIGTERM stop accepting and let open requests finish; SIGHUP reloads the
//! TLS certificate and key.

use super::api::ErrorBody;
use super::tls::{ClientCert, ServerTls};
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// The bounds of a served vault or realm.
#[derive(Clone)]
pub struct ServeOptions {
    /// TLS (certificate and key, reloaded on SIGHUP); `None` serves plain HTTP.
    pub tls: Option<Arc<ServerTls>>,
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Time for a TLS handshake, and for the headers of each request (also the longest a
    /// kept-alive connection may sit idle).
    pub header_read_timeout: Duration,
    /// Time from a request's headers to its answer, its body included.
    pub request_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tls: None,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until SIGINT or SIGTERM, then lets open requests finish
/// (at most 10 s).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
) -> std::io::Result<()> {
    serve_until(listener, router, options, shutdown_signal()).await
}

/// [`serve`] until `stop` completes.
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let (stopping, stopped) = watch::channel(false);
    if let Some(tls) = &options.tls {
        reload_on_sighup(tls.clone());
        reload_on_change(tls.clone());
    }
    tokio::pin!(stop);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                cap = options.max_connections,
                "connection refused: too many open"
            );
            continue;
        };
        let (router, options, stopped) = (router.clone(), options.clone(), stopped.clone());
        tokio::spawn(async move {
            connection(tcp, router, &options, stopped).await;
            drop(slot);
        });
    }
    let _ = stopping.send(true);
    let all = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all)).await;
    Ok(())
}

async fn connection(
    tcp: TcpStream,
    router: Router,
    options: &ServeOptions,
    stopped: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    match &options.tls {
        None => http(TokioIo::new(tcp), router, options, None, stopped).await,
        Some(tls) => {
            let handshake = tls.acceptor().accept(tcp);
            match tokio::time::timeout(options.header_read_timeout, handshake).await {
                Ok(Ok(stream)) => {
                    // A client certificate the handshake verified (`--tls-client-ca`), by
                    // its fingerprint: every request of the connection carries it.
                    let peer = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| ClientCert::of(leaf.as_ref()));
                    http(TokioIo::new(stream), router, options, peer, stopped).await
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn http<I>(
    io: I,
    router: Router,
    options: &ServeOptions,
    peer: Option<ClientCert>,
    mut stopped: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let request_timeout = options.request_timeout;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut request = request.map(Body::new);
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        let answer = router.clone().oneshot(request);
        async move {
            match tokio::time::timeout(request_timeout, answer).await {
                Ok(answer) => answer,
                Err(_) => Ok::<_, Infallible>(too_slow(request_timeout)),
            }
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended");
            }
        }
        _ = stopped.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// 408 with the JSON error body of `spec/vault.md` §10 (class `io`).
fn too_slow(limit: Duration) -> Response<Body> {
    let body = ErrorBody {
        error: "io".into(),
        message: format!("the request was not complete within {} s", limit.as_secs()),
    };
    let mut response = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// How often the certificate and key files are looked at for a change.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Reloads the certificate and key when either file changes (size, modification time or
/// inode, looked at every [`WATCH_EVERY`]: a metadata call per file, no watcher library). A
/// pair replaced one file at a time fails to load at the first change and loads at the
/// second; until then the certificate in use stays.
fn reload_on_change(tls: Arc<ServerTls>) {
    tokio::spawn(async move {
        let mut last = tls.fingerprint();
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tick.tick().await;
            let now = tls.fingerprint();
            if now == last {
                continue;
            }
            last = now;
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded (its files changed)"),
                Err(e) => tracing::warn!(
                    error = %e,
                    "TLS files changed but do not load (yet); the old certificate stays"
                ),
            }
        }
    });
}

/// Reloads the certificate and key from their files on every SIGHUP; a reload that fails
/// keeps the one in use and says why.
fn reload_on_sighup(tls: Arc<ServerTls>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; the old certificate stays")
                }
            }
        }
    });
}
