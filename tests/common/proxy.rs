//! A loopback TCP proxy that can blackhole traffic, for the partition test (issue #8).
//!
//! Forwards every connection accepted on `127.0.0.1:<port>` to an upstream address. In
//! blackhole mode it stops moving bytes in both directions — and does not pass on a close
//! either — while keeping both sockets open, as a partitioned path does. It cannot stop the
//! kernel from acknowledging segments and keepalive probes on its own sockets: through this
//! proxy neither peer's TCP stack sees the partition (no retransmission timeout, keepalives
//! answered), only the missing replies. [`Proxy::heal`] resumes forwarding, delivering
//! what was held. Dropping the proxy closes everything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A running proxy; stopped on drop.
pub struct Proxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    blackholed: Arc<watch::Sender<bool>>,
    accepted: Arc<AtomicUsize>,
    token: CancellationToken,
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (tx, _) = watch::channel(false);
        let blackholed = Arc::new(tx);
        let accepted = Arc::new(AtomicUsize::new(0));
        let token = CancellationToken::new();
        let (bh, acc, tok) = (blackholed.clone(), accepted.clone(), token.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    r = listener.accept() => match r {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                    _ = tok.cancelled() => return,
                };
                acc.fetch_add(1, Ordering::Relaxed);
                let (bh, tok) = (bh.clone(), tok.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, bh.subscribe(), tok.clone()));
                    tokio::spawn(pump(sr, cw, bh.subscribe(), tok));
                });
            }
        });
        Proxy {
            port,
            blackholed,
            accepted,
            token,
        }
    }

    /// Stops forwarding (both directions, closes included) without closing anything.
    pub fn blackhole(&self) {
        self.blackholed.send_replace(true);
    }

    /// Forwards again, delivering what was held.
    pub fn heal(&self) {
        self.blackholed.send_replace(false);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Waits while blackholed; false when cancelled meanwhile.
async fn passable(bh: &mut watch::Receiver<bool>, token: &CancellationToken) -> bool {
    loop {
        if !*bh.borrow_and_update() {
            return true;
        }
        tokio::select! {
            r = bh.changed() => if r.is_err() { return false },
            _ = token.cancelled() => return false,
        }
    }
}

/// Copies `from` to `to` while passable; stops reading while blackholed.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut bh: watch::Receiver<bool>,
    token: CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !passable(&mut bh, &token).await {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => r.unwrap_or(0),
            // Blackholed while waiting for data: stop reading.
            _ = bh.changed() => continue,
            _ = token.cancelled() => return,
        };
        // Data or a close read just as the blackhole began is held until it heals.
        if !passable(&mut bh, &token).await {
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
