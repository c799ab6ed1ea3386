//! Shared set-up of the NATS suites: the CI server's URL from `ES_NATS_URL`, a `nats-server`
//! this test starts on its own port and store directory (so it can stop and restart it), and
//! reading a whole JetStream stream back.
//!
//! Without `ES_NATS_URL` (or without a `nats-server` binary) a test prints one line saying it
//! was skipped and passes; in CI (`CI` set) it fails instead, because skipping would hide the
//! relay from the run. `.ci/run` installs the server and sets the variable.

#![allow(dead_code)] // Each suite uses a different part of this module.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::{self, stream::Stream};
use es_core::RecordedEvent;
use futures_util::StreamExt;

/// The variable holding the CI server's URL.
pub const URL_VARIABLE: &str = "ES_NATS_URL";

fn skip(reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{reason} in CI: `.ci/run` installs and starts nats-server"
    );
    println!("NATS tests skipped: {reason}");
}

/// The CI server's URL, or `None` after printing the line that says the test was skipped.
///
/// # Panics
/// In CI, where skipping would hide the relay from the run.
pub fn url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            skip(&format!("{URL_VARIABLE} is not set"));
            None
        }
    }
}

/// The `nats-server` binary: `$NATS_SERVER`, else `nats-server` on the `PATH`, else Debian's
/// `/usr/sbin/nats-server`; `None` after printing that the test was skipped.
pub fn server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|directory| directory.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    let found = on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/nats-server");
        debian.is_file().then_some(debian)
    });
    if found.is_none() {
        skip("no nats-server binary");
    }
    found
}

/// A `nats-server -js` of this test's own, on a loopback port and a store directory that
/// survive [`NatsServer::stop`] and [`NatsServer::start`].
pub struct NatsServer {
    binary: PathBuf,
    directory: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server keeping its JetStream data under `directory`, or `None` if there is no
    /// binary (after printing that the test was skipped).
    pub fn start_in(directory: &Path) -> Option<Self> {
        let binary = server_binary()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = NatsServer {
            binary,
            directory: directory.to_owned(),
            port,
            child: None,
        };
        server.start();
        Some(server)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the (stopped) server again, on the same port and store, and waits until it
    /// accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = std::fs::File::create(self.directory.join("nats-server.log"))
            .expect("the server's log file");
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.directory.join("jetstream"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on port {} (see {})",
                self.port,
                self.directory.join("nats-server.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server the way an operator restarting it does (SIGTERM, then wait).
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM reached nats-server");
        child.wait().expect("nats-server exits");
    }

    /// Stops and starts the server.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client that reconnects quickly (tests restart the broker) and waits for a broker that is
/// not up yet.
pub async fn connect(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(50 * u64::try_from(attempts.min(10)).unwrap_or(10))
        })
        .connect(url)
        .await
        .expect("the client is created")
}

/// Every message of `stream`, from sequence 1, as (stream sequence, decoded event).
///
/// # Panics
/// If a message is not an event envelope.
pub async fn read_stream(stream: &mut Stream) -> Vec<(u64, RecordedEvent)> {
    let info = stream.info().await.expect("the stream's info");
    let total = usize::try_from(info.state.messages).expect("a count that fits");
    let mut messages = Vec::with_capacity(total);
    if total == 0 {
        return messages;
    }
    let consumer = stream
        .create_consumer(OrderedConfig::default())
        .await
        .expect("an ordered consumer");
    let mut delivered = consumer.messages().await.expect("the consumer's messages");
    while messages.len() < total {
        let message = tokio::time::timeout(Duration::from_secs(30), delivered.next())
            .await
            .expect("the stream is read back without stalling")
            .expect("the ordered consumer goes on")
            .expect("a message");
        let sequence = message
            .info()
            .expect("the message's metadata")
            .stream_sequence;
        let event = es_nats::envelope::from_message(&message.message)
            .unwrap_or_else(|error| panic!("message {sequence} is not an envelope: {error}"));
        messages.push((sequence, event));
    }
    messages
}

/// The JetStream context for `client`.
pub fn jetstream(client: async_nats::Client) -> jetstream::Context {
    jetstream::new(client)
}
