//! Where a route listens, and its connections: HTTP/1.1 with keep-alive,
//! each connection's owner told once, when it is accepted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use super::Route;
use super::owner::{self, Access};

/// A client has this long to send a request's headers.
const HEADER_WAIT: Duration = Duration::from_secs(30);

/// A route's local address, as `listen` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    /// A loopback address (`127.0.0.1:PORT`, `[::1]:PORT`, `localhost:PORT`).
    Tcp(SocketAddr),
    /// `unix:/path`: a socket file, checked like the agent's.
    Unix(PathBuf),
}

impl Address {
    pub(crate) fn parse(listen: &str) -> Result<Address, String> {
        if let Some(path) = listen.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!(
                    "listen = \"{listen}\": a socket path must be absolute"
                ));
            }
            return match cfg!(unix) {
                true => Ok(Address::Unix(path)),
                false => Err("unix: routes need a Unix system; use 127.0.0.1:PORT".into()),
            };
        }
        let addr: SocketAddr = match listen.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}").parse(),
            None => listen.parse(),
        }
        .map_err(|_| {
            format!(
                "listen = \"{}\": give 127.0.0.1:PORT, [::1]:PORT or unix:/path/to/socket",
                listen.escape_default()
            )
        })?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "listen = \"{listen}\": a route listens on loopback only (127.0.0.1 or ::1): \
                 it adds your token to what it forwards"
            ));
        }
        Ok(Address::Tcp(addr))
    }

    /// The URL (or socket path) to give a tool.
    pub(crate) fn url(&self) -> String {
        match self {
            Address::Tcp(addr) => format!("http://{addr}/"),
            Address::Unix(path) => format!("unix:{}", path.display()),
        }
    }
}

/// A bound route address.
pub(crate) enum Bound {
    Tcp(tokio::net::TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Bound {
    /// Binds `address`; a socket file is made 0600 and a stale one (no
    /// one listening) replaced.
    pub(crate) async fn bind(address: &Address) -> Result<Bound, String> {
        match address {
            Address::Tcp(addr) => tokio::net::TcpListener::bind(addr)
                .await
                .map(Bound::Tcp)
                .map_err(|e| format!("cannot listen on {addr}: {e}")),
            #[cfg(unix)]
            Address::Unix(path) => {
                use std::os::unix::fs::{FileTypeExt, PermissionsExt};
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if !meta.file_type().is_socket() {
                        return Err(format!("{} exists and is not a socket", path.display()));
                    }
                    if std::os::unix::net::UnixStream::connect(path).is_ok() {
                        return Err(format!("{} is in use", path.display()));
                    }
                    let _ = std::fs::remove_file(path);
                }
                let listener = tokio::net::UnixListener::bind(path)
                    .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(Bound::Unix(listener, path.clone()))
            }
            #[cfg(not(unix))]
            Address::Unix(_) => Err("unix: routes need a Unix system".into()),
        }
    }

    /// The address actually bound (the port chosen for port 0).
    pub(crate) fn address(&self) -> Address {
        match self {
            Bound::Tcp(l) => match l.local_addr() {
                Ok(addr) => Address::Tcp(addr),
                Err(_) => Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            },
            #[cfg(unix)]
            Bound::Unix(_, path) => Address::Unix(path.clone()),
        }
    }

    /// Accepts and serves connections, at most as many at once as `limit`
    /// (shared by every route) allows, until the task is aborted; `stop`
    /// ends the connections it accepted. (Boxed: a request reaches the
    /// agent, which starts routes.)
    pub(crate) fn serve(
        self,
        route: Arc<Route>,
        limit: Arc<tokio::sync::Semaphore>,
        stop: watch::Receiver<bool>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.accept(route, limit, stop))
    }

    async fn accept(
        self,
        route: Arc<Route>,
        limit: Arc<tokio::sync::Semaphore>,
        stop: watch::Receiver<bool>,
    ) {
        match self {
            Bound::Tcp(listener) => loop {
                let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(route = %route.name, "accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let route = Arc::clone(&route);
                let stop = stop.clone();
                tokio::spawn(async move {
                    // /proc/net/tcp is read off the runtime's thread.
                    let access = match stream.local_addr() {
                        Ok(local) => {
                            tokio::task::spawn_blocking(move || owner::of_tcp(local, peer))
                                .await
                                .unwrap_or(Access::Unknown)
                        }
                        Err(_) => Access::Unknown,
                    };
                    let _ = stream.set_nodelay(true);
                    connection(stream, access, route, stop).await;
                    drop(permit);
                });
            },
            #[cfg(unix)]
            Bound::Unix(listener, _path) => loop {
                let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                    return;
                };
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(route = %route.name, "accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let me = rustix::process::geteuid().as_raw();
                let access = match stream.peer_cred() {
                    Ok(cred) if cred.uid() == me => Access::Owner,
                    Ok(cred) => Access::Foreign(format!("uid {}", cred.uid())),
                    Err(_) => Access::Unknown,
                };
                let route = Arc::clone(&route);
                let stop = stop.clone();
                tokio::spawn(async move {
                    connection(stream, access, route, stop).await;
                    drop(permit);
                });
            },
        }
    }
}

/// Serves one client connection: requests one after another (keep-alive),
/// until the client closes it or the route stops. Another user's gets one
/// refusal, written without reading what they sent, and is closed.
async fn connection<S>(
    mut stream: S,
    access: Access,
    route: Arc<Route>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if let Access::Foreign(who) = &access {
        use tokio::io::AsyncWriteExt;
        route.refused_foreign(who);
        let body = format!(
            "a365 proxy: this connection belongs to another user ({who}): a365's proxy routes \
             serve only the user who runs the agent\n"
        );
        let answer = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            use tokio::io::AsyncReadExt;
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
            // What they sent is read and dropped before the close: closing
            // with it unread would reset the connection, and the refusal
            // could be lost before they read it.
            let mut sink = [0u8; 4096];
            let mut left: usize = 64 << 10;
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
        return;
    }
    let access = Arc::new(access);
    let service = hyper::service::service_fn(move |req| {
        let (route, access) = (Arc::clone(&route), Arc::clone(&access));
        async move { Ok::<_, Infallible>(super::forward::serve(&route, &access, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_WAIT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stopped(&mut stop) => {
            // The request under way is answered; no other.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!("a proxy connection ended: {e}");
    }
}

/// Completes once the route stops.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("127.0.0.1:7365").unwrap().url(),
            "http://127.0.0.1:7365/"
        );
        assert_eq!(
            Address::parse("localhost:80").unwrap(),
            Address::Tcp("127.0.0.1:80".parse().unwrap())
        );
        assert!(Address::parse("[::1]:1").is_ok());
        for bad in ["0.0.0.0:80", "192.168.1.2:80", "x", "unix:rel/path", ":80"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
