//! Test helpers: a tiny HTTP/1.1 server on loopback (std only) that serves fixed bodies by path
//! and counts the hits, and the test keys of `tests/keys/` (see `make-keys.sh` there).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

#[derive(Default)]
struct Routes {
    bodies: HashMap<String, (u16, Vec<u8>)>,
    hits: HashMap<String, usize>,
    delay: Duration,
}

/// An HTTP server on 127.0.0.1 answering GETs from a table; every request is counted.
#[derive(Clone)]
pub struct TestServer {
    pub base: String,
    routes: Arc<Mutex<Routes>>,
}

impl TestServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes = Arc::new(Mutex::new(Routes::default()));
        let shared = routes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = shared.clone();
                std::thread::spawn(move || serve(stream, &routes));
            }
        });
        Self { base, routes }
    }

    /// Answer GET `path` with `status` and `body` from now on.
    pub fn set(&self, path: &str, status: u16, body: impl Into<Vec<u8>>) {
        let mut routes = self.routes.lock().unwrap();
        routes.bodies.insert(path.to_owned(), (status, body.into()));
    }

    /// Wait this long before each answer (to make concurrent requests overlap).
    pub fn set_delay(&self, delay: Duration) {
        self.routes.lock().unwrap().delay = delay;
    }

    /// Requests for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        *self.routes.lock().unwrap().hits.get(path).unwrap_or(&0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn serve(mut stream: TcpStream, routes: &Mutex<Routes>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    let (status, body, delay) = {
        let mut routes = routes.lock().unwrap();
        *routes.hits.entry(path.clone()).or_default() += 1;
        let (status, body) = routes
            .bodies
            .get(&path)
            .cloned()
            .unwrap_or((404, b"not found".to_vec()));
        (status, body, routes.delay)
    };
    std::thread::sleep(delay);
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

pub const RSA: &[u8] = include_bytes!("../keys/rsa.pem");
pub const RSA_OTHER: &[u8] = include_bytes!("../keys/rsa-other.pem");
pub const RSA_PUB_PEM: &[u8] = include_bytes!("../keys/rsa.pub.pem");
pub const RSA_PUB_DER: &[u8] = include_bytes!("../keys/rsa.pub.der");
pub const P256: &[u8] = include_bytes!("../keys/p256.pem");
pub const P256_OTHER: &[u8] = include_bytes!("../keys/p256-other.pem");
pub const P256_PUB: &[u8] = include_bytes!("../keys/p256.pub.pem");
pub const P256_OTHER_PUB: &[u8] = include_bytes!("../keys/p256-other.pub.pem");
pub const ED25519: &[u8] = include_bytes!("../keys/ed25519.pem");
pub const ED25519_PUB: &[u8] = include_bytes!("../keys/ed25519.pub.pem");

/// The DER inside a PEM.
pub fn pem_der(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).unwrap()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
