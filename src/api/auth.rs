//! Who gets in: the bearer-token check. It runs on the connection's thread
//! right after the headers are read, before the body, so a client without
//! the token costs no body read and never reaches the scheduler thread.
//! It does not log: the caller counts and logs refusals, never the header.

use super::Error;
use crate::config::Access;

/// Lets the request through when no token is configured, when `path` is
/// open to all, or when `authorization` carries the token.
pub fn check(access: &Access, path: &str, authorization: Option<&str>) -> Result<(), Error> {
    let Some(token) = &access.token else {
        return Ok(());
    };
    if is_open(access, path) {
        return Ok(());
    }
    match authorization.and_then(bearer) {
        Some(given) if same_bytes(given.as_bytes(), token.expose().as_bytes()) => Ok(()),
        _ => Err(Error::Unauthorized),
    }
}

/// Paths that need no token. Trailing slashes are trimmed as the router
/// trims them, so `/health/` is as open as `/health` and no more.
fn is_open(access: &Access, path: &str) -> bool {
    match path.trim_end_matches('/') {
        "/health" => true,
        "/metrics" => access.metrics_public,
        _ => false,
    }
}

/// The credentials of an `Authorization: Bearer <token>` header value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// Compares in a time that depends only on the length of `expected`, so a
/// client cannot find the token a byte at a time by timing answers.
fn same_bytes(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(0) ^ e;
    }
    // Keeps the optimiser from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn access(metrics_public: bool) -> Access {
        Access {
            token: Some(Secret::new("s3cret-token").unwrap()),
            metrics_public,
        }
    }

    #[test]
    fn the_right_token_passes_and_others_do_not() {
        let a = access(false);
        assert_eq!(check(&a, "/tasks", Some("Bearer s3cret-token")), Ok(()));
        assert_eq!(check(&a, "/tasks", Some("bearer  s3cret-token ")), Ok(()));
        for wrong in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer s3cret-toke"),
            Some("Bearer s3cret-tokenX"),
            Some("Basic s3cret-token"),
            Some("s3cret-token"),
        ] {
            assert_eq!(
                check(&a, "/tasks", wrong),
                Err(Error::Unauthorized),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn health_is_open_and_metrics_only_when_asked() {
        assert_eq!(check(&access(false), "/health/", None), Ok(()));
        assert_eq!(
            check(&access(false), "/metrics", None),
            Err(Error::Unauthorized)
        );
        assert_eq!(check(&access(true), "/metrics", None), Ok(()));
        assert_eq!(
            check(&access(true), "/healthz", None),
            Err(Error::Unauthorized)
        );
    }

    #[test]
    fn without_a_token_everything_is_open() {
        let open = Access {
            token: None,
            metrics_public: false,
        };
        assert_eq!(check(&open, "/tasks", None), Ok(()));
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abd", b"abc"));
        assert!(!same_bytes(b"ab", b"abc"));
        assert!(!same_bytes(b"abc\0", b"abc"));
        assert!(!same_bytes(b"", b"abc"));
    }
}
