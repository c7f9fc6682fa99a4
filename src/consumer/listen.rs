//! A connection whose notifications reach the consumer: [`crate::conn::Target::connect`]
//! drops them, so the consumer's source connection is opened here, with the connection
//! driven on a task that forwards every `NOTIFY` to a channel.
//!
//! The daemon sends `NOTIFY pgqd_tick, '<queue name>'` in the transaction of every tick
//! it makes; a consumer waiting for work wakes on its queue's name instead of sleeping the
//! whole `poll_interval` (which remains the fallback: the C pgqd notifies nothing).

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::tls::{NoTls, TlsStream};
use tokio_postgres::{AsyncMessage, Client, Connection, Socket};

use crate::conn::{self, Target, tls};

/// Connects to `target`; the receiver gets the payload of every notification.
pub async fn connect(
    target: &Target,
) -> Result<(Client, mpsc::UnboundedReceiver<String>), conn::Error> {
    let err = |source| conn::Error::Connect {
        target: conn::describe(target),
        source,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let client = match tls::client_config(&target.tls)? {
        None => {
            let (client, c) = target.pg.connect(NoTls).await.map_err(err)?;
            drive(c, tx);
            client
        }
        Some(rc) => {
            let mk = tokio_postgres_rustls::MakeRustlsConnect::new(rc);
            let (client, c) = target.pg.connect(mk).await.map_err(err)?;
            drive(c, tx);
            client
        }
    };
    Ok((client, rx))
}

/// Polls the connection until it closes, forwarding notifications; a full stop of the
/// receiver (the consumer went away) does not stop the connection early.
fn drive<T>(mut c: Connection<Socket, T>, tx: mpsc::UnboundedSender<String>)
where
    T: AsyncRead + AsyncWrite + TlsStream + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| c.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(n.payload().to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
}
