//! The HTTP side: tiny_http worker threads read requests (headers, body
//! within its limit) and hand them to the scheduler thread through a
//! channel; the scheduler answers through a one-slot reply channel and the
//! worker writes the response. The scheduler thread never touches a socket.

pub mod json;
pub mod routes;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use crate::scheduler::ApiCall;

/// How long a worker waits for the scheduler's answer before replying 503.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A request as the scheduler sees it: already read, size-checked.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An answer: status, content type and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
            allow: None,
        }
    }

    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, format!("{{\"error\":{}}}", json::quote(message)))
    }
}

/// Binds `addr` and starts `threads` workers feeding `calls`.
pub fn start(
    addr: SocketAddr,
    threads: usize,
    max_body: usize,
    calls: async_channel::Sender<ApiCall>,
) -> io::Result<SocketAddr> {
    let server = tiny_http::Server::http(addr).map_err(io::Error::other)?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    let server = Arc::new(server);
    for n in 0..threads {
        let server = Arc::clone(&server);
        let calls = calls.clone();
        std::thread::Builder::new()
            .name(format!("http-{n}"))
            .spawn(move || {
                while let Ok(request) = server.recv() {
                    // A bug in one request's handling must not end the worker.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        serve(request, &calls, max_body);
                    }));
                    if outcome.is_err() {
                        log::error!("event=http_worker_panic");
                    }
                }
            })?;
    }
    Ok(bound)
}

fn serve(mut request: tiny_http::Request, calls: &async_channel::Sender<ApiCall>, max_body: usize) {
    let response = match read(&mut request, max_body) {
        Ok(req) => ask(req, calls),
        Err(response) => response,
    };
    respond(request, response);
}

/// Reads the method, URL and body; oversized or unreadable bodies get their
/// error response here, before the scheduler sees them.
fn read(request: &mut tiny_http::Request, max_body: usize) -> Result<Request, Response> {
    let too_large = || Response::error(413, &format!("request body larger than {max_body} bytes"));
    if request.body_length().is_some_and(|n| n > max_body) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut reader = request.as_reader().take(max_body as u64 + 1);
    if let Err(err) = reader.read_to_end(&mut body) {
        return Err(Response::error(
            400,
            &format!("could not read request body: {err}"),
        ));
    }
    if body.len() > max_body {
        return Err(too_large());
    }
    let (path, query) = split_url(request.url());
    Ok(Request {
        method: request.method().as_str().to_ascii_uppercase(),
        path,
        query,
        body,
    })
}

fn ask(request: Request, calls: &async_channel::Sender<ApiCall>) -> Response {
    let (reply, answer) = mpsc::sync_channel(1);
    if calls.send_blocking(ApiCall { request, reply }).is_err() {
        return Response::error(503, "edgecron is shutting down");
    }
    answer
        .recv_timeout(ANSWER_TIMEOUT)
        .unwrap_or_else(|_| Response::error(503, "the scheduler did not answer in time"))
}

fn respond(request: tiny_http::Request, response: Response) {
    let mut out = tiny_http::Response::from_string(response.body).with_status_code(response.status);
    let content_type = format!("{}; charset=utf-8", response.content_type);
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        out.add_header(header);
    }
    if let Some(header) = response
        .allow
        .and_then(|allow| tiny_http::Header::from_bytes("Allow", allow).ok())
    {
        out.add_header(header);
    }
    // The client may have gone; nothing to do about it.
    let _ = request.respond(out);
}

/// Splits a request target into its path and decoded query pairs.
pub fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (percent_decode(path), pairs)
}

/// Decodes `%XX` escapes and `+` (as a space, form style); malformed
/// escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_decode() {
        let (path, query) = split_url("/cron/next?expr=0+9+*+*+1&tz=Europe%2FBerlin&x");
        assert_eq!(path, "/cron/next");
        assert_eq!(
            query,
            vec![
                ("expr".to_string(), "0 9 * * 1".to_string()),
                ("tz".to_string(), "Europe/Berlin".to_string()),
                ("x".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn malformed_escapes_survive() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
    }
}
