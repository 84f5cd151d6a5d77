//! Best-effort `sd_notify` for systemd's `Type=notify`: readiness, stopping,
//! watchdog pings and a status line, sent as datagrams to `NOTIFY_SOCKET`.
//!
//! It only reports; it never decides. Nothing here can fail the service: when
//! systemd did not start us (no `NOTIFY_SOCKET`) every call does nothing, and
//! a send that fails is logged at debug level and forgotten.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

/// Tells systemd that start-up is finished: the API listens and the schedule
/// is loaded. Until then `systemctl start` waits and dependants do not start.
pub fn ready() {
    notify("READY=1");
}

/// Tells systemd that a graceful shutdown has begun, so a slow drain of
/// running tasks shows as "deactivating" rather than as a hang.
pub fn stopping() {
    notify("STOPPING=1");
}

/// Pings the service watchdog. Call it from the scheduling loop, not from a
/// separate thread, so that a stuck loop stops the pings and systemd restarts
/// the service.
pub fn watchdog() {
    notify("WATCHDOG=1");
}

/// Sets the one-line status that `systemctl status` shows.
pub fn status(msg: &str) {
    notify(&status_line(msg));
}

/// The watchdog timeout that systemd enforces (`WatchdogSec=`), or `None`
/// when no watchdog is set or it is meant for another process.
///
/// Ping at half this interval, as `sd_watchdog_enabled(3)` advises, so one
/// late turn of the loop does not get the service killed.
#[must_use]
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id())
}

fn notify(state: &str) {
    let socket = std::env::var_os("NOTIFY_SOCKET");
    if let Err(err) = send(socket.as_deref(), state) {
        log::debug!("sd_notify {state:?} to {socket:?} not delivered: {err}");
    }
}

/// Sends one notification datagram. `None` or an empty name means we are not
/// under systemd, which is not an error. A name starting with `@` is a Linux
/// abstract socket; anything else is a filesystem path.
fn send(socket: Option<&OsStr>, state: &str) -> io::Result<()> {
    let Some(socket) = socket.filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let sender = UnixDatagram::unbound()?;
    let sent = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            sender.send_to_addr(state.as_bytes(), &SocketAddr::from_abstract_name(name)?)?
        }
        None => sender.send_to(state.as_bytes(), Path::new(socket))?,
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "datagram truncated",
        ));
    }
    Ok(())
}

/// The protocol separates assignments by newlines, so a newline inside the
/// message would end the status early and start a bogus assignment.
fn status_line(msg: &str) -> String {
    format!("STATUS={}", msg.replace(['\n', '\r'], " "))
}

/// Reads `WATCHDOG_USEC` and `WATCHDOG_PID` as `sd_watchdog_enabled(3)` does:
/// a set PID that is not ours means the watchdog belongs to a parent (for
/// example a wrapper script), and zero or garbage means no watchdog.
fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let meant_for_us = match pid {
        Some(pid) => pid.trim().parse::<u32>().ok() == Some(own_pid),
        None => true,
    };
    if !meant_for_us {
        return None;
    }
    let usec = usec?.trim().parse::<u64>().ok().filter(|&usec| usec > 0)?;
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let name = format!(
                "edgecron-notify-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::create_dir(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn receive(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 512];
        let len = listener.recv(&mut buf).unwrap();
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = TempDir::new();
        let path = dir.0.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();

        send(Some(path.as_os_str()), "READY=1").unwrap();
        assert_eq!(receive(&listener), "READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("edgecron-notify-test-{}", fastrand::u64(..));
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();

        send(Some(OsStr::new(&format!("@{name}"))), "WATCHDOG=1").unwrap();
        assert_eq!(receive(&listener), "WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_does_nothing() {
        send(None, "READY=1").unwrap();
        send(Some(OsStr::new("")), "READY=1").unwrap();
    }

    #[test]
    fn a_missing_socket_is_an_error_for_the_caller_to_log() {
        let dir = TempDir::new();
        let path = dir.0.join("absent.sock");
        assert!(send(Some(path.as_os_str()), "READY=1").is_err());
    }

    #[test]
    fn status_keeps_to_one_line() {
        assert_eq!(
            status_line("loaded 3 tasks\nlistening"),
            "STATUS=loaded 3 tasks listening"
        );
    }

    #[test]
    fn watchdog_interval_follows_usec_and_pid() {
        let usec = Some("30000000");
        assert_eq!(
            parse_watchdog(usec, None, 42),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_watchdog(usec, Some("42"), 42),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_watchdog(usec, Some("41"), 42), None);
        assert_eq!(parse_watchdog(usec, Some("junk"), 42), None);
        assert_eq!(parse_watchdog(None, Some("42"), 42), None);
        assert_eq!(parse_watchdog(Some("0"), None, 42), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 42), None);
    }
}
