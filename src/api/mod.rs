//! The HTTP side: `http` accepts connections and reads requests within
//! their limits on one thread per connection; `auth` checks the token there,
//! so a request without it never reaches the scheduler. Accepted requests
//! go to the scheduler thread through a channel, the answer comes back
//! through a one-slot reply channel, and the connection thread writes it.
//! The scheduler thread never touches a socket. `Error` is the one place
//! that decides an error's HTTP status.

pub mod auth;
pub mod http;
pub mod json;
pub mod routes;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use crate::config::{Access, HttpLimits};
use crate::metrics::HttpCounters;
use crate::scheduler::{ApiCall, ApiError};

/// How long a connection waits for the scheduler's answer before replying 503.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A request as the scheduler sees it: already read, size-checked.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An answer: status, content type, body and any extra headers.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, &'static str)>,
}

/// Why a request got an error answer, from reading it to carrying it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The scheduler refused or failed the operation.
    Api(ApiError),
    /// The bearer token is missing or wrong.
    Unauthorized,
    /// Not an HTTP/1.x request this server can read.
    Malformed(String),
    /// The body has no `Content-Length` (chunked transfer encoding).
    LengthRequired,
    /// The request line and headers exceed this many bytes.
    HeadTooLarge(usize),
    /// The body exceeds this many bytes.
    BodyTooLarge(usize),
    /// The whole request did not arrive within the read timeout.
    Timeout,
    /// The client went away before its request was whole; nobody to answer.
    Disconnected,
    /// Every connection slot is taken.
    Busy,
    NoSuchEndpoint,
    /// A known path and a method it does not take; holds the methods it does.
    MethodNotAllowed(&'static str),
    /// The scheduler is stopping or did not answer in time.
    Unavailable(&'static str),
    /// A handler panicked.
    Internal,
}

impl Response {
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
        }
    }
}

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::Api(ApiError::Invalid(_)) | Error::Malformed(_) | Error::Disconnected => 400,
            Error::Api(ApiError::NotFound(_)) | Error::NoSuchEndpoint => 404,
            Error::Api(ApiError::Conflict(_)) => 409,
            Error::Api(ApiError::Unavailable(_)) | Error::Busy | Error::Unavailable(_) => 503,
            Error::Unauthorized => 401,
            Error::LengthRequired => 411,
            Error::HeadTooLarge(_) => 431,
            Error::BodyTooLarge(_) => 413,
            Error::Timeout => 408,
            Error::MethodNotAllowed(_) => 405,
            Error::Internal => 500,
        }
    }

    /// The JSON error answer, `{"error": message}`, with the headers the
    /// status calls for.
    pub fn response(&self) -> Response {
        let body = format!("{{\"error\":{}}}", json::quote(&self.to_string()));
        let mut response = Response::json(self.status(), body);
        match self {
            Error::Unauthorized => response.headers.push(("WWW-Authenticate", "Bearer")),
            Error::MethodNotAllowed(allow) => response.headers.push(("Allow", allow)),
            _ => {}
        }
        response
    }
}

impl From<ApiError> for Error {
    fn from(err: ApiError) -> Error {
        Error::Api(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(err) => write!(f, "{err}"),
            Error::Unauthorized => f.write_str(
                "missing or wrong bearer token; send the header Authorization: Bearer <token>",
            ),
            Error::Malformed(what) => write!(f, "malformed request: {what}"),
            Error::LengthRequired => {
                f.write_str("chunked request bodies are not supported; send Content-Length")
            }
            Error::HeadTooLarge(max) => {
                write!(f, "request line and headers larger than {max} bytes")
            }
            Error::BodyTooLarge(max) => write!(f, "request body larger than {max} bytes"),
            Error::Timeout => f.write_str("the request did not arrive within the read timeout"),
            Error::Disconnected => {
                f.write_str("the connection closed before the request was whole")
            }
            Error::Busy => f.write_str("too many open connections; try again"),
            Error::NoSuchEndpoint => f.write_str("no such endpoint"),
            Error::MethodNotAllowed(allow) => {
                write!(f, "method not allowed; this path takes {allow}")
            }
            Error::Unavailable(why) => f.write_str(why),
            Error::Internal => f.write_str("internal error; see the service log"),
        }
    }
}

impl std::error::Error for Error {}

/// What every connection thread shares.
struct Context {
    access: Access,
    counters: Arc<HttpCounters>,
    calls: async_channel::Sender<ApiCall>,
}

/// Binds `addr` and starts accepting connections that feed `calls`.
pub fn start(
    addr: SocketAddr,
    limits: HttpLimits,
    access: Access,
    calls: async_channel::Sender<ApiCall>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let context = Context {
        access,
        counters: Arc::new(HttpCounters::default()),
        calls,
    };
    let counters = Arc::clone(&context.counters);
    let handler: Arc<http::Handler> = Arc::new(move |conn: &mut http::Connection| {
        let response = answer(conn, &context).unwrap_or_else(|err| context.rejected(&err, conn));
        context.append_metrics(response)
    });
    http::serve(listener, limits, counters, handler)?;
    Ok(bound)
}

/// Reads one request, checks its token, and has the scheduler answer it.
/// The token is checked before the body is read.
fn answer(conn: &mut http::Connection, context: &Context) -> Result<Response, Error> {
    let head = conn.read_head()?;
    let (path, query) = split_url(&head.target);
    auth::check(&context.access, &path, head.header("authorization"))?;
    let body = conn.read_body(&head)?;
    // HEAD is answered as GET; the connection leaves the body out.
    let method = if head.method == "HEAD" {
        "GET".to_string()
    } else {
        head.method
    };
    let request = Request {
        method,
        path,
        query,
        body,
    };
    ask(request, &context.calls)
}

impl Context {
    /// Counts and logs a request refused before it reached the scheduler.
    fn rejected(&self, err: &Error, conn: &http::Connection) -> Response {
        let counter = match err {
            Error::Unauthorized => Some(&self.counters.unauthorized),
            Error::Timeout => Some(&self.counters.read_timeouts),
            _ => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        // Never the headers: one of them may hold a token.
        log::debug!(
            "event=http_rejected peer={:?} status={} error={:?}",
            conn.peer(),
            err.status(),
            err.to_string()
        );
        err.response()
    }

    /// Adds the counters kept on this side to a `/metrics` answer.
    fn append_metrics(&self, mut response: Response) -> Response {
        if response.status == 200 && response.content_type.starts_with("text/plain") {
            self.counters.render(&mut response.body);
        }
        response
    }
}

fn ask(request: Request, calls: &async_channel::Sender<ApiCall>) -> Result<Response, Error> {
    let (reply, answer) = mpsc::sync_channel(1);
    if calls.send_blocking(ApiCall { request, reply }).is_err() {
        return Err(Error::Unavailable("edgecron is shutting down"));
    }
    answer
        .recv_timeout(ANSWER_TIMEOUT)
        .map_err(|_| Error::Unavailable("the scheduler did not answer in time"))
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
