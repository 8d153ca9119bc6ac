//! The fault proxy against a tiny HTTP/1.1 upstream written here (keep-alive, `Content-Length`
//! and chunked answers, answers read to close), seen by a raw client: what passes is byte for
//! byte what was sent, and each fault is what the client observes.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_testkit::faults::{Action, Counts, FaultProxy, RequestInfo};

/// A message as the raw client and the upstream read it.
#[derive(Debug)]
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn status(&self) -> u16 {
        self.start.split(' ').nth(1).unwrap().parse().unwrap()
    }
}

/// Reads one message; `None` at EOF before it. `until_close`: a body without a length runs
/// to EOF (answers), else it is empty (requests).
fn read_message(r: &mut impl BufRead, until_close: bool) -> std::io::Result<Option<Message>> {
    let mut start = String::new();
    if r.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (n, v) = line.split_once(':').unwrap();
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut m = Message {
        start: start.trim_end().to_string(),
        headers,
        body: Vec::new(),
    };
    if m.header("transfer-encoding") == Some("chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0u8; size + 2];
            if size == 0 {
                r.read_line(&mut String::new())?;
                break;
            }
            r.read_exact(&mut chunk)?;
            m.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = m.header("content-length") {
        m.body = vec![0u8; n.parse().unwrap()];
        r.read_exact(&mut m.body)?;
    } else if until_close {
        r.read_to_end(&mut m.body)?;
    }
    Ok(Some(m))
}

/// The upstream: `/len...` answers with a length, `/chunked...` in chunks of 7 bytes,
/// `/close` with no length and closes, `/drop` with a length and then closes without saying
/// so. The body is `"<METHOD> <path>\n"` followed by the request body.
struct Upstream {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (req, conns) = (requests.clone(), connections.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            conns.fetch_add(1, Ordering::SeqCst);
            let req = req.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut w = stream;
                while let Ok(Some(m)) = read_message(&mut reader, false) {
                    req.fetch_add(1, Ordering::SeqCst);
                    let path = m.start.split(' ').nth(1).unwrap().to_string();
                    let method = m.start.split(' ').next().unwrap();
                    let mut body = format!("{method} {path}\n").into_bytes();
                    body.extend_from_slice(&m.body);
                    let mut out = Vec::new();
                    if path.starts_with("/chunked") {
                        out.extend_from_slice(
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n",
                        );
                        for piece in body.chunks(7) {
                            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                            out.extend_from_slice(piece);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n\r\n");
                    } else if path.starts_with("/close") {
                        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                        out.extend_from_slice(&body);
                    } else {
                        out.extend_from_slice(
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
                        );
                        out.extend_from_slice(&body);
                    }
                    if w.write_all(&out).is_err() || path.starts_with("/close") || path.starts_with("/drop") {
                        break;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        requests,
        connections,
    }
}

/// A raw keep-alive client.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(proxy: &FaultProxy) -> Self {
        let w = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Self {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        }
    }

    fn send(&mut self, method: &str, path: &str, body: &[u8]) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: upstream\r\nX-Test: Mixed-Case\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.w.write_all(head.as_bytes()).unwrap();
        self.w.write_all(body).unwrap();
    }

    fn send_chunked(&mut self, path: &str, pieces: &[&[u8]]) {
        let mut out =
            format!("POST {path} HTTP/1.1\r\nHost: upstream\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
        for p in pieces {
            out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        self.w.write_all(&out).unwrap();
    }

    fn answer(&mut self) -> std::io::Result<Option<Message>> {
        read_message(&mut self.r, true)
    }

    fn call(&mut self, method: &str, path: &str, body: &[u8]) -> Message {
        self.send(method, path, body);
        self.answer().unwrap().expect("an answer")
    }

    /// Whether the proxy closed the connection with no answer (EOF or a reset).
    fn closed_unanswered(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.r.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        }
    }
}

fn expected(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path}\n").into_bytes();
    out.extend_from_slice(body);
    out
}

#[test]
fn keep_alive_requests_pass_byte_for_byte() {
    let up = upstream();
    let proxy = FaultProxy::start(&format!("http://{}", up.addr));
    let mut c = Client::connect(&proxy);
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();

    let a = c.call("POST", "/len/a?x=1&y=%20", &binary);
    assert_eq!(a.status(), 200);
    assert_eq!(a.body, expected("POST", "/len/a?x=1&y=%20", &binary));
    let b = c.call("POST", "/chunked/b", b"answered in chunks of seven bytes");
    assert_eq!(b.header("transfer-encoding"), Some("chunked"));
    assert_eq!(b.header("x-kind"), Some("chunked"));
    assert_eq!(
        b.body,
        expected("POST", "/chunked/b", b"answered in chunks of seven bytes")
    );
    c.send_chunked("/len/c", &[b"a chunked ", b"request ", &binary[..5000]]);
    let body_c = [&b"a chunked request "[..], &binary[..5000]].concat();
    assert_eq!(c.answer().unwrap().unwrap().body, expected("POST", "/len/c", &body_c));
    let d = c.call("GET", "/len/d", b"");
    assert_eq!(d.body, expected("GET", "/len/d", b""));
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "one upstream connection, kept alive"
    );

    // The upstream closes after an answer without saying so: the next request reopens it.
    assert_eq!(c.call("PUT", "/drop", b"x").body, expected("PUT", "/drop", b"x"));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(c.call("GET", "/len/e", b"").body, expected("GET", "/len/e", b""));
    assert_eq!(up.connections.load(Ordering::SeqCst), 2, "reopened once");

    // An answer read to close: relayed whole, then the client connection ends too.
    let f = c.call("POST", "/close", b"last");
    assert_eq!(f.body, expected("POST", "/close", b"last"));
    assert!(c.closed_unanswered());
    assert_eq!(
        proxy.counts(),
        Counts {
            seen: 7,
            forwarded: 7,
            faulted: 0
        }
    );
    assert_eq!(up.requests.load(Ordering::SeqCst), 7);
}

#[test]
fn canned_answers_are_not_forwarded_and_keep_the_connection() {
    let up = upstream();
    let proxy = FaultProxy::start(&up.addr.to_string());
    let mut c = Client::connect(&proxy);
    proxy.set(Action::aws_rest_json_error(
        503,
        "ServiceUnavailableError",
        "down \"for now\"",
    ));
    for _ in 0..2 {
        let a = c.call("POST", "/Execute", b"{\"sql\":\"SELECT 1\"}");
        assert_eq!(a.start, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(a.header("x-amzn-errortype"), Some("ServiceUnavailableError"));
        assert_eq!(a.header("content-type"), Some("application/json"));
        assert!(a.header("x-amzn-requestid").is_some());
        assert_eq!(a.body, br#"{"message":"down \"for now\""}"#);
    }
    proxy.set(Action::s3_error(503, "SlowDown", "Please reduce your request rate."));
    let s = c.call("PUT", "/bucket/key", b"object");
    assert_eq!(s.status(), 503);
    assert_eq!(s.header("content-type"), Some("application/xml"));
    let xml = String::from_utf8(s.body).unwrap();
    assert!(
        xml.contains("<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"),
        "{xml}"
    );
    proxy.set(Action::respond(418, &[("X-Canned", "yes")], "teapot"));
    let t = c.call("GET", "/x", b"");
    assert_eq!(
        (t.status(), t.header("x-canned"), &t.body[..]),
        (418, Some("yes"), &b"teapot"[..])
    );
    assert_eq!(up.requests.load(Ordering::SeqCst), 0, "nothing reached the upstream");

    proxy.clear();
    assert_eq!(c.call("GET", "/len/ok", b"").body, expected("GET", "/len/ok", b""));
    assert_eq!(
        proxy.counts(),
        Counts {
            seen: 5,
            forwarded: 1,
            faulted: 4
        }
    );
}

#[test]
fn a_delay_slows_the_answer_then_passes_it() {
    let up = upstream();
    let proxy = FaultProxy::start(&format!("http://{}/", up.addr));
    let mut c = Client::connect(&proxy);
    proxy.set(Action::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let a = c.call("POST", "/len/slow", b"body");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.body, expected("POST", "/len/slow", b"body"));
    proxy.clear();
    let started = Instant::now();
    c.call("GET", "/len/fast", b"");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        proxy.counts(),
        Counts {
            seen: 2,
            forwarded: 2,
            faulted: 0
        }
    );
}

#[test]
fn a_reset_closes_the_connection_unanswered() {
    let up = upstream();
    let proxy = FaultProxy::start(&format!("http://{}", up.addr));
    let mut c = Client::connect(&proxy);
    assert_eq!(c.call("GET", "/len/first", b"").status(), 200);
    proxy.set(Action::Reset);
    c.send("POST", "/len/lost", b"body");
    assert!(c.closed_unanswered());
    assert_eq!(
        up.requests.load(Ordering::SeqCst),
        1,
        "the reset request was not forwarded"
    );
    proxy.clear();
    let mut c = Client::connect(&proxy);
    assert_eq!(c.call("GET", "/len/again", b"").status(), 200);
    assert_eq!(
        proxy.counts(),
        Counts {
            seen: 3,
            forwarded: 2,
            faulted: 1
        }
    );
}

#[test]
fn refuse_takes_the_endpoint_down_until_cleared() {
    let up = upstream();
    let proxy = FaultProxy::start(&format!("http://{}", up.addr));
    let mut open = Client::connect(&proxy);
    assert_eq!(open.call("GET", "/len/before", b"").status(), 200);
    proxy.set(Action::Refuse);
    assert!(
        open.closed_unanswered(),
        "an open keep-alive connection is closed at once"
    );
    match TcpStream::connect(("127.0.0.1", proxy.port())) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused),
        Ok(s) => {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            assert!(matches!((&s).read(&mut [0u8; 1]), Ok(0) | Err(_)), "closed at once");
        }
    }
    proxy.clear();
    let mut c = Client::connect(&proxy);
    assert_eq!(
        c.call("GET", "/len/after", b"").body,
        expected("GET", "/len/after", b"")
    );
    assert_eq!(
        proxy.counts(),
        Counts {
            seen: 2,
            forwarded: 2,
            faulted: 0
        }
    );
}

#[test]
fn a_hang_never_answers_until_cleared() {
    let up = upstream();
    let proxy = FaultProxy::start(&format!("http://{}", up.addr));
    let mut c = Client::connect(&proxy);
    proxy.set(Action::Hang);
    c.send("POST", "/len/hung", b"body");
    c.w.set_read_timeout(Some(Duration::from_millis(400))).unwrap();
    let err = c.answer().expect_err("no answer");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    assert_eq!(proxy.counts().faulted, 1);
    proxy.clear();
    c.w.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert!(
        c.closed_unanswered(),
        "clearing closes the hung connection, still unanswered"
    );
    let mut c = Client::connect(&proxy);
    assert_eq!(c.call("GET", "/len/after", b"").status(), 200);
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn a_rule_fails_exactly_the_second_request_and_sees_each_one() {
    let up = upstream();
    let proxy = FaultProxy::start(&format!("http://{}", up.addr));
    let seen: Arc<Mutex<Vec<RequestInfo>>> = Arc::default();
    let log = seen.clone();
    proxy.set_rule(move |r| {
        log.lock().unwrap().push(r.clone());
        if r.seq == 2 {
            Action::aws_rest_json_error(500, "InternalServerErrorException", "second")
        } else {
            Action::Pass
        }
    });
    let mut c = Client::connect(&proxy);
    let statuses: Vec<u16> = (1..=4)
        .map(|i| {
            c.call("POST", &format!("/len/{i}"), format!("body {i}").as_bytes())
                .status()
        })
        .collect();
    assert_eq!(statuses, [200, 500, 200, 200]);
    assert_eq!(
        proxy.counts(),
        Counts {
            seen: 4,
            forwarded: 3,
            faulted: 1
        }
    );
    assert_eq!(up.requests.load(Ordering::SeqCst), 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let second = &seen[1];
    assert_eq!((second.method.as_str(), second.path.as_str()), ("POST", "/len/2"));
    assert_eq!(second.body, b"body 2");
    assert!(second.body_contains("dy 2"));
    assert_eq!(second.header("X-TEST"), Some("Mixed-Case"));
    assert!(
        second.headers.iter().any(|(n, v)| n == "x-test" && v == "Mixed-Case"),
        "names lowercased"
    );
    assert_eq!(second.header("content-length"), Some("6"));
}

#[test]
fn dropping_the_proxy_stops_it_at_once() {
    let up = upstream();
    let proxy = FaultProxy::start(&format!("http://{}", up.addr));
    let port = proxy.port();
    let mut hung = Client::connect(&proxy);
    let mut slow = Client::connect(&proxy);
    proxy.set_rule(|r| {
        if r.path.contains("hang") {
            Action::Hang
        } else {
            Action::Delay(Duration::from_secs(60))
        }
    });
    hung.send("GET", "/hang", b"");
    slow.send("GET", "/len/slow", b"");
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    drop(proxy);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(hung.closed_unanswered());
    assert!(slow.closed_unanswered());
    let refused = TcpStream::connect(("127.0.0.1", port));
    assert!(refused.is_err(), "the listener is closed");
}
