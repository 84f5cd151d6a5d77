//! The HTTP/1.1 front door: accepts connections, enforces `HttpLimits`
//! (connections open at once, one deadline for reading the whole request,
//! header and body size) and reads one request per connection.
//!
//! Deliberately small: no keep-alive (every response closes the
//! connection), no chunked request bodies, no TLS; httparse reads the
//! request head. It replaced tiny_http
//! 0.12, which reads headers without a size limit on an unbounded number of
//! threads and offers no socket timeouts, so one client could hold a worker
//! or the memory forever (see docs/security.md). It knows nothing of
//! routes, tokens or the scheduler: `api` passes a handler in.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Error, Response};
use crate::config::HttpLimits;
use crate::metrics::HttpCounters;

/// Connection threads only parse, wait on a channel and write; this is
/// ample and keeps hundreds of them cheap.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;
/// After answering a request whose bytes were not all read, how long the
/// unread rest is drained, so the close does not reset the connection
/// before the client has read the answer.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes read per `read` call.
const CHUNK: usize = 8192;

/// Answers one request on a connection; it reads the head and body it
/// needs through the connection.
pub type Handler = dyn Fn(&mut Connection) -> Response + Send + Sync;

/// The request line and headers.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    /// The request target as sent (path and query, still encoded).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub content_length: usize,
}

/// One accepted client, read under one deadline.
pub struct Connection {
    stream: TcpStream,
    peer: Option<SocketAddr>,
    limits: HttpLimits,
    deadline: Instant,
    /// Bytes read past the end of the head: the start of the body.
    unread: Vec<u8>,
    /// Whether the whole request has been read; if not, the client may
    /// still be sending when the answer goes out.
    complete: bool,
    /// A HEAD request: the answer carries the GET's headers, no body.
    head_only: bool,
}

/// Starts the thread that accepts connections on `listener`; each
/// connection gets a thread of its own, at most `limits.max_connections`
/// at once.
pub fn serve(
    listener: TcpListener,
    limits: HttpLimits,
    counters: Arc<HttpCounters>,
    handler: Arc<Handler>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || accept_loop(&listener, limits, &counters, &handler))?;
    Ok(())
}

impl Head {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Connection {
    fn new(stream: TcpStream, limits: HttpLimits) -> Connection {
        Connection {
            peer: stream.peer_addr().ok(),
            stream,
            limits,
            deadline: Instant::now() + limits.read_timeout,
            unread: Vec::new(),
            complete: false,
            head_only: false,
        }
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Reads the request line and headers, at most `max_header_bytes`.
    pub fn read_head(&mut self) -> Result<Head, Error> {
        let max = self.limits.max_header_bytes;
        let mut buf = Vec::new();
        let mut chunk = [0u8; CHUNK];
        loop {
            if let Some((end, blank)) = head_end(&buf) {
                if end > max {
                    return Err(Error::HeadTooLarge(max));
                }
                self.unread = buf.split_off(end);
                let head = parse_head(&buf[..end - blank])?;
                self.complete = head.content_length == 0 && self.unread.is_empty();
                self.head_only = head.method == "HEAD";
                return Ok(head);
            }
            if buf.len() > max {
                return Err(Error::HeadTooLarge(max));
            }
            let n = self.read_some(&mut chunk)?;
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the body `head` announces, at most `max_body_bytes`.
    pub fn read_body(&mut self, head: &Head) -> Result<Vec<u8>, Error> {
        let length = head.content_length;
        if length > self.limits.max_body_bytes {
            return Err(Error::BodyTooLarge(self.limits.max_body_bytes));
        }
        // curl and others wait for this before sending a large body.
        let expects = head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if expects && length > self.unread.len() {
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }

        let mut body = std::mem::take(&mut self.unread);
        let mut chunk = [0u8; CHUNK];
        while body.len() < length {
            let n = self.read_some(&mut chunk)?;
            body.extend_from_slice(&chunk[..n]);
        }
        // Anything after the body would be a pipelined request, which
        // this server does not take.
        body.truncate(length);
        self.complete = true;
        Ok(body)
    }

    /// One `read` bounded by what is left of the deadline; end of input
    /// before the request is whole is an error.
    fn read_some(&mut self, into: &mut [u8]) -> Result<usize, Error> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|_| Error::Disconnected)?;
            match self.stream.read(into) {
                Ok(0) => return Err(Error::Disconnected),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return Err(Error::Timeout),
                Err(_) => return Err(Error::Disconnected),
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let timeout = Some(self.limits.read_timeout);
        self.stream
            .set_write_timeout(timeout)
            .and_then(|()| self.stream.write_all(bytes))
            .map_err(|_| Error::Disconnected)
    }

    /// Writes `response` and closes the connection.
    fn finish(mut self, response: &Response) {
        if self.write(&render(response, self.head_only)).is_err() {
            log::debug!("event=http_write_failed peer={:?}", self.peer);
            return;
        }
        if !self.complete {
            self.linger();
        }
    }

    /// Reads and discards what the client is still sending, briefly, so the
    /// close does not reset the connection under the answer just written.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let until = Instant::now() + LINGER;
        let mut budget = self.limits.max_body_bytes + self.limits.max_header_bytes;
        let mut chunk = [0u8; CHUNK];
        while budget > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    limits: HttpLimits,
    counters: &HttpCounters,
    handler: &Arc<Handler>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                // Usually out of file descriptors; waiting lets some close.
                log::warn!("event=http_accept_failed error=\"{err}\"");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if open.load(Ordering::Acquire) >= limits.max_connections {
            counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            refuse(stream);
            continue;
        }
        let slot = Slot::take(&open);
        let handler = Arc::clone(handler);
        let spawned = std::thread::Builder::new()
            .name("http-conn".into())
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let _slot = slot;
                handle(stream, limits, handler.as_ref());
            });
        if let Err(err) = spawned {
            log::error!("event=http_thread_failed error=\"{err}\"");
        }
    }
}

/// Answers a connection over the cap without reading from it; the accept
/// thread must never wait on a client.
fn refuse(stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(&render(&Error::Busy.response(), false));
    let _ = stream.shutdown(Shutdown::Both);
}

fn handle(stream: TcpStream, limits: HttpLimits, handler: &Handler) {
    let mut conn = Connection::new(stream, limits);
    // A bug in one request's handling must not take more than its own
    // connection down.
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&mut conn)));
    let response = answer.unwrap_or_else(|_| {
        log::error!("event=http_handler_panic peer={:?}", conn.peer);
        Error::Internal.response()
    });
    conn.finish(&response);
}

/// A counted connection slot, given back when dropped, even by a panic.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Slot {
        open.fetch_add(1, Ordering::AcqRel);
        Slot(Arc::clone(open))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn is_timeout(err: &io::Error) -> bool {
    // Linux reports an expired SO_RCVTIMEO as EAGAIN, others as ETIMEDOUT.
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Where the head ends: the index just past the blank line, and that
/// blank line's length (`\r\n\r\n`, or `\n\n` from clients that send
/// bare line feeds, which httparse reads too).
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i + 4, 4));
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i + 2, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Headers accepted per request; the head's byte limit binds first in
/// practice.
const MAX_HEADERS: usize = 64;

/// Parses the request line and headers (without the final blank line)
/// with httparse, then applies this server's rules: a path target, HTTP/1.x,
/// UTF-8 header values, a `Content-Length` and no chunked body.
/// Error messages never quote header values: one may hold a token.
fn parse_head(bytes: &[u8]) -> Result<Head, Error> {
    let malformed = |what: &str| Error::Malformed(what.to_string());
    let mut whole = Vec::with_capacity(bytes.len() + 4);
    whole.extend_from_slice(bytes);
    whole.extend_from_slice(b"\r\n\r\n");
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    match request.parse(&whole) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(malformed("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadTooLarge(bytes.len())),
        Err(httparse::Error::Version) => {
            return Err(malformed("only HTTP/1.0 and HTTP/1.1 are supported"));
        }
        Err(err) => return Err(Error::Malformed(format!("bad request head ({err})"))),
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(malformed("bad request line"));
    };
    if !target.starts_with('/') {
        return Err(malformed("request target must be a path starting with /"));
    }
    let headers = request
        .headers
        .iter()
        .map(|h| match std::str::from_utf8(h.value) {
            Ok(value) => Ok((h.name.to_string(), value.trim().to_string())),
            Err(_) => Err(malformed("a header value is not UTF-8")),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut head = Head {
        method: method.to_ascii_uppercase(),
        target: target.to_string(),
        headers,
        content_length: 0,
    };
    if head.header("transfer-encoding").is_some() {
        return Err(Error::LengthRequired);
    }
    head.content_length = content_length(&head)?;
    Ok(head)
}

/// The body length; several `Content-Length` headers must agree.
fn content_length(head: &Head) -> Result<usize, Error> {
    let mut length = None;
    for (_, value) in head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let n = Some(value)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| Error::Malformed("bad Content-Length".into()))?;
        if length.is_some_and(|l| l != n) {
            return Err(Error::Malformed(
                "conflicting Content-Length headers".into(),
            ));
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

/// The bytes of a response; every response closes the connection.
fn render(response: &Response, head_only: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(response.body.as_bytes());
    }
    bytes
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_their_length() {
        let head = parse_head(
            b"POST /tasks?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-Empty:\r\nauthorization:  Bearer t ",
        )
        .unwrap();
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("POST", "/tasks?x=1")
        );
        assert_eq!(head.content_length, 12);
        assert_eq!(head.header("Authorization"), Some("Bearer t"));
        assert_eq!(head.header("x-empty"), Some(""));
    }

    #[test]
    fn malformed_heads_are_refused_without_quoting_values() {
        for bad in [
            &b"GET /\r\nHost: a"[..],
            b"GET / HTTP/2.0",
            b"GET http://x/ HTTP/1.1",
            b"G\xffT / HTTP/1.1",
            b"GET / HTTP/1.1\r\nno colon here",
            b"GET / HTTP/1.1\r\nContent-Length: -1",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2",
            b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999",
        ] {
            let err = parse_head(bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
        }
        let err = parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked").unwrap_err();
        assert_eq!(err.status(), 411);
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some((18, 4)));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nbody"), Some((24, 2)));
        let head = parse_head(b"GET /health HTTP/1.1\nHost: a").unwrap();
        assert_eq!(head.target, "/health");
    }

    #[test]
    fn responses_close_and_carry_their_length() {
        let mut response = Response::json(401, "{}".into());
        response.headers.push(("WWW-Authenticate", "Bearer"));
        let text = String::from_utf8(render(&response, false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(text.contains("Content-Length: 2\r\nConnection: close\r\n"));
        assert!(text.ends_with("WWW-Authenticate: Bearer\r\n\r\n{}"));
    }
}
