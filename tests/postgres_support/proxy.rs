//! Network faults between a store and the server, made on loopback: a TCP proxy that forwards
//! to the real server and can be frozen, can swallow the server's replies, or can cut every
//! connection; and a black hole that accepts connections and never answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with the bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways.
    Forward,
    /// Holds every byte read, both ways, until the mode changes (a frozen network: nothing
    /// arrives, nothing fails). New connections are accepted and frozen too.
    Frozen,
    /// Forwards the client's bytes to the server and drops the server's replies: the server
    /// does the work, the client never hears of it.
    SwallowReplies,
}

/// A TCP proxy in front of the PostgreSQL server. Dropping it stops it and closes every
/// connection.
pub struct Proxy {
    address: SocketAddr,
    mode: watch::Sender<Mode>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free loopback port, forwarding to the server of `url` (a
    /// `postgres://` URL with a TCP host and port).
    pub async fn start(url: &str) -> Proxy {
        let target = server_address(url).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let address = listener.local_addr().expect("a bound address");
        let (mode, _) = watch::channel(Mode::Forward);
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (mode, connections) = (mode.clone(), Arc::clone(&connections));
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let mode = mode.subscribe();
                    let task = tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(target).await else {
                            return;
                        };
                        relay(client, server, mode).await;
                    });
                    connections
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(task);
                }
            }
        });
        Proxy {
            address,
            mode,
            connections,
            accept,
        }
    }

    /// `url` pointed at this proxy instead of the server.
    pub fn url(&self, url: &str) -> String {
        with_address(url, self.address)
    }

    /// Switches what the proxy does with the bytes it reads from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Closes every connection made so far, both sides (the client sees its socket closed,
    /// the server sees its client gone). Later connections work as the mode says.
    pub fn cut_connections(&self) {
        for task in self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_connections();
    }
}

/// Copies bytes both ways between `client` and `server` as `mode` says, until either side
/// closes.
async fn relay(client: TcpStream, server: TcpStream, mode: watch::Receiver<Mode>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump(client_read, server_write, mode.clone(), false) => {}
        () = pump(server_read, client_write, mode, true) => {}
    }
}

/// One direction of [`relay`]; `replies` says it is the server's.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    replies: bool,
) {
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        loop {
            let current = *mode.borrow_and_update();
            match current {
                Mode::Frozen => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
                Mode::SwallowReplies if replies => break,
                Mode::Forward | Mode::SwallowReplies => {
                    if to.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// A listener that accepts TCP connections and never sends or reads a byte: a server that
/// hangs in the startup handshake. Dropping it closes everything.
pub struct BlackHole {
    address: SocketAddr,
    accept: JoinHandle<()>,
}

impl BlackHole {
    /// A black hole on a free loopback port.
    pub async fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let address = listener.local_addr().expect("a bound address");
        let accept = tokio::spawn(async move {
            // Kept open, unread, until the black hole is dropped.
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        BlackHole { address, accept }
    }

    /// `url` pointed at the black hole.
    pub fn url(&self, url: &str) -> String {
        with_address(url, self.address)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The TCP address of the server in `url`.
async fn server_address(url: &str) -> SocketAddr {
    let config: tokio_postgres::Config = url.parse().expect("a valid PostgreSQL URL");
    let host: String = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("the proxy needs a TCP host in the server URL, found {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut addresses = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("the server's host resolves");
    addresses.next().expect("the server's host has an address")
}

/// `url` (`postgres://user:password@host:port/database?options`) with its host and port
/// replaced by `address`.
pub fn with_address(url: &str, address: SocketAddr) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .expect("a postgres:// URL (the proxy does not rewrite key/value strings)");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let credentials = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!("{scheme}://{credentials}{address}{tail}")
}
