//! The console over plain HTTP, for what a browser does not show: status codes, headers, the
//! escaped bytes of a page, and the absence of the write action in a read-only console.

use std::time::Duration;

use es_console::{Console, ConsoleApp, ConsoleOptions};
use es_core::{CodecId, EventStore, ExpectedVersion, InMemory, Metadata, NewEvent, StreamId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app with no domain knowledge: JSON payloads shown as stored.
struct Plain(InMemory);

impl ConsoleApp for Plain {
    type Store = InMemory;

    fn store(&self) -> &InMemory {
        &self.0
    }
}

/// A console on a fresh port; returns its address and the store.
async fn start(options: ConsoleOptions) -> (String, InMemory) {
    let store = InMemory::new();
    let payload = br#"{"note":"<script>window.__pwned = 1</script>","quote":"\"&'"}"#;
    let event = NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "Noted<b>".into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: payload.to_vec(),
        metadata: Metadata::default().with("user", "<img src=x onerror=alert(1)>"),
    };
    store
        .append(
            &StreamId::new("note", "a/b <c>"),
            ExpectedVersion::NoStream,
            vec![event],
        )
        .await
        .expect("append");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let console = Console::new(Plain(store.clone()), options);
    tokio::spawn(console.serve(listener, std::future::pending()));
    (address, store)
}

/// One HTTP/1.1 request; the status code, the head and the body.
async fn request(address: &str, method: &str, path: &str) -> (u16, String, String) {
    request_to(address, address, method, path).await
}

/// One HTTP/1.1 request naming `host`.
async fn request_to(address: &str, host: &str, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn console_pages_escape_everything_the_store_holds() {
    let (address, _store) = start(ConsoleOptions::new()).await;
    let (status, head, body) = request(&address, "GET", "/streams/note/a%2Fb%20%3Cc%3E").await;
    assert_eq!(status, 200, "{body}");
    assert!(head
        .to_lowercase()
        .contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(head
        .to_lowercase()
        .contains("x-content-type-options: nosniff"));
    assert!(
        body.contains("&lt;script&gt;window.__pwned = 1&lt;/script&gt;"),
        "{body}"
    );
    assert!(body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(body.contains("Noted&lt;b&gt;"));
    assert!(body.contains("note/a/b &lt;c&gt;"));
    assert_eq!(
        body.matches("<script").count(),
        1,
        "only the console's own script"
    );
    assert!(!body.contains("<img") && !body.contains("<b>"));

    let (status, _, log) = request(&address, "GET", "/").await;
    assert_eq!(status, 200);
    assert!(
        log.contains("href=\"/streams/note/a%2Fb%20%3Cc%3E\""),
        "{log}"
    );
    assert!(log.contains("Noted&lt;b&gt;"));
}

#[tokio::test]
async fn console_bad_paths_and_parameters_get_error_pages() {
    let (address, _store) = start(ConsoleOptions::new()).await;
    for path in [
        "/nowhere",
        "/streams/note/missing",
        "/streams/x",
        "/streams/a/b/c/d",
    ] {
        let (status, _, body) = request(&address, "GET", path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("<h1>Not found</h1>"), "{path}: {body}");
    }
    for path in [
        "/?before=abc",
        "/?limit=-1",
        "/streams/note/a%2Fb%20%3Cc%3E?version=2",
        "/streams/note/a%2Fb%20%3Cc%3E?at=yesterday",
        "/read-models?position=x",
        "/live?after=x",
    ] {
        let (status, _, body) = request(&address, "GET", path).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    let (status, _, body) = request(&address, "GET", "/?before=99999999999999999999999").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn console_is_read_only_unless_resume_is_allowed() {
    let (address, _store) = start(ConsoleOptions::new()).await;
    let (status, _, body) = request(&address, "POST", "/read-models/anything/resume").await;
    assert_eq!(status, 404, "no write route in a read-only console: {body}");
    let (status, _, _) = request(&address, "GET", "/read-models").await;
    assert_eq!(status, 200);

    let (address, _store) = start(ConsoleOptions::new().with_allow_resume(true)).await;
    let (status, _, body) = request(&address, "POST", "/read-models/anything/resume").await;
    assert_eq!(status, 404, "an unknown read model: {body}");
    let (status, _, _) = request(&address, "GET", "/read-models/anything/resume").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn console_live_endpoint_streams_new_events() {
    let (address, store) = start(ConsoleOptions::new()).await;
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let text = format!("GET /live?after=1 HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(text.as_bytes()).await.expect("write");
    let event = NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "Later".into(),
        schema_version: 1,
        codec: CodecId::Json,
        payload: b"{}".to_vec(),
        metadata: Metadata::default(),
    };
    store
        .append(
            &StreamId::new("note", "z"),
            ExpectedVersion::Any,
            vec![event],
        )
        .await
        .expect("append");
    let mut seen = String::new();
    let mut buffer = [0_u8; 4096];
    while !seen.contains("\"event_type\":\"Later\"") {
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("the event in time")
            .expect("read");
        assert!(read > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("id: 2"), "{seen}");
    assert!(seen.contains("\"href\":\"/streams/note/z\""), "{seen}");
}

#[tokio::test]
async fn console_on_loopback_answers_only_loopback_host_names() {
    let (address, _store) = start(ConsoleOptions::new()).await;
    let port = address
        .rsplit_once(':')
        .map(|(_, port)| port)
        .expect("a port");
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "[::1]".to_owned(),
    ] {
        let (status, _, _) = request_to(&address, &host, "GET", "/").await;
        assert_eq!(status, 200, "{host}");
    }
    for host in [
        format!("evil.example:{port}"),
        "127.0.0.1.evil.example".to_owned(),
    ] {
        let (status, _, _) = request_to(&address, &host, "GET", "/").await;
        assert_eq!(status, 421, "a rebinding page's host `{host}`");
    }
}
