//! Every setting of `edgecron serve`, declared once: its flag, environment
//! variable, default and doc line. Values are validated here, at startup,
//! so a bad one fails at boot rather than when a task fires.
//!
//! Precedence: command-line flag, then environment variable, then default.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// One declared setting. A setting whose default is `false` is a switch:
/// its flag takes no value. A setting with an empty flag is read from the
/// environment only.
pub struct Setting {
    pub flag: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

impl Setting {
    fn is_switch(&self) -> bool {
        self.default == "false"
    }
}

/// The settings table; `--help` and the README are generated from the same
/// words.
pub const SETTINGS: &[Setting] = &[
    Setting {
        flag: "--db",
        env: "SCHED_DB_PATH",
        default: "tasks.db",
        doc: "SQLite database file (created if missing)",
    },
    Setting {
        flag: "--listen",
        env: "EDGECRON_LISTEN",
        default: "127.0.0.1:$PORT",
        doc: "address the API listens on",
    },
    Setting {
        flag: "--port",
        env: "PORT",
        default: "5000",
        doc: "port used when --listen is not given (listens on 127.0.0.1)",
    },
    Setting {
        flag: "--poll-interval",
        env: "POLL_INTERVAL_SECONDS",
        default: "30",
        doc: "seconds between checks for changes made directly in the database",
    },
    Setting {
        flag: "--default-max-retries",
        env: "DEFAULT_MAX_RETRIES",
        default: "3",
        doc: "retries after a failed first attempt, for tasks that set none",
    },
    Setting {
        flag: "--default-retry-delay",
        env: "DEFAULT_RETRY_DELAY",
        default: "60",
        doc: "seconds before each retry, for tasks that set none",
    },
    Setting {
        flag: "--default-timeout",
        env: "EDGECRON_DEFAULT_TIMEOUT_SECONDS",
        default: "3600",
        doc: "seconds a run may take before its process group is killed",
    },
    Setting {
        flag: "--default-timezone",
        env: "EDGECRON_TIMEZONE",
        default: "UTC",
        doc: "IANA zone schedules are read in, for tasks that set none",
    },
    Setting {
        flag: "--misfire-grace",
        env: "EDGECRON_MISFIRE_GRACE_SECONDS",
        default: "86400",
        doc: "an occurrence missed by at most this many seconds (downtime, clock jump) still runs once",
    },
    Setting {
        flag: "--shutdown-grace",
        env: "EDGECRON_SHUTDOWN_GRACE_SECONDS",
        default: "30",
        doc: "on SIGTERM, seconds running commands get before they are killed",
    },
    Setting {
        flag: "--keep-runs",
        env: "EDGECRON_KEEP_RUNS",
        default: "1000",
        doc: "finished runs kept per task (older ones are deleted)",
    },
    Setting {
        flag: "--keep-days",
        env: "EDGECRON_KEEP_DAYS",
        default: "30",
        doc: "days finished runs are kept",
    },
    Setting {
        flag: "",
        env: "EDGECRON_TOKEN",
        default: "",
        doc: "bearer token every API request but /health must carry (environment only, so it never shows in ps)",
    },
    Setting {
        flag: "--token-file",
        env: "EDGECRON_TOKEN_FILE",
        default: "",
        doc: "file holding the token, such as $CREDENTIALS_DIRECTORY/token under systemd; a trailing newline is ignored",
    },
    Setting {
        flag: "--metrics-public",
        env: "EDGECRON_METRICS_PUBLIC",
        default: "false",
        doc: "serve /metrics without the token, for Prometheus scrapers",
    },
    Setting {
        flag: "--insecure-no-token",
        env: "EDGECRON_INSECURE_NO_TOKEN",
        default: "false",
        doc: "allow listening on a non-loopback address without a token",
    },
    Setting {
        flag: "--max-connections",
        env: "EDGECRON_MAX_CONNECTIONS",
        default: "32",
        doc: "HTTP connections open at once (more get 503)",
    },
    Setting {
        flag: "--read-timeout",
        env: "EDGECRON_READ_TIMEOUT_SECONDS",
        default: "10",
        doc: "seconds a client has to send its whole request (slower gets 408)",
    },
    Setting {
        flag: "--max-header-bytes",
        env: "EDGECRON_MAX_HEADER_BYTES",
        default: "8192",
        doc: "largest request line plus headers (bigger gets 431)",
    },
    Setting {
        flag: "--max-body-bytes",
        env: "EDGECRON_MAX_BODY_BYTES",
        default: "1048576",
        doc: "largest request body accepted (bigger gets 413)",
    },
    Setting {
        flag: "--max-running",
        env: "EDGECRON_MAX_RUNNING",
        default: "64",
        doc: "commands running at once, all tasks together; more wait their turn (queued)",
    },
    Setting {
        flag: "--max-env-entries",
        env: "EDGECRON_MAX_ENV_ENTRIES",
        default: "64",
        doc: "environment variables one task may set",
    },
    Setting {
        flag: "--wait-clock-sync",
        env: "EDGECRON_WAIT_CLOCK_SYNC",
        default: "off",
        doc: "before the first firing, wait for the clock to be synchronised: off, systemd \
              (waits for /run/systemd/timesync/synchronized) or a file whose existence means so",
    },
    Setting {
        flag: "--log-level",
        env: "LOG_LEVEL",
        default: "info",
        doc: "error, warn, info, debug or trace",
    },
    Setting {
        flag: "--log-format",
        env: "LOG_FORMAT",
        default: "text",
        doc: "text or json",
    },
];

/// systemd-timesyncd creates this file once the clock is synchronised.
const SYSTEMD_SYNC_FILE: &str = "/run/systemd/timesync/synchronized";

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub db_path: PathBuf,
    pub listen: SocketAddr,
    pub poll_interval: Duration,
    pub default_max_retries: i64,
    pub default_retry_delay: i64,
    pub default_timeout: i64,
    pub default_timezone: String,
    pub misfire_grace: Duration,
    pub shutdown_grace: Duration,
    pub keep_runs: i64,
    pub keep_days: i64,
    pub access: Access,
    pub http: HttpLimits,
    /// Environment variables one task may set.
    pub max_env_entries: usize,
    /// Commands running at once across all tasks.
    pub max_running: usize,
    pub log_level: log::LevelFilter,
    pub log_format: LogFormat,
    /// Firing waits until this file exists.
    pub clock_sync_file: Option<PathBuf>,
}

/// Who may use the API.
#[derive(Debug, Clone)]
pub struct Access {
    /// Required on every request but `/health` when set.
    pub token: Option<Secret>,
    /// `/metrics` is open even when a token is set.
    pub metrics_public: bool,
}

/// What one HTTP client may send or hold, so that no client can starve
/// the others or exhaust memory.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// Time from accepting a connection to having read the whole request.
    pub read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
}

/// A bearer token. Its `Debug` form hides the value, so logging a
/// `Config` can never leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Checks that `text` can travel in an `Authorization` header: one word
    /// of printable ASCII.
    pub fn new(text: &str) -> Result<Secret, &'static str> {
        if text.is_empty() {
            return Err("is empty");
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be one word of printable ASCII (no spaces or control characters)");
        }
        Ok(Secret(text.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that could not be used; names the flag and variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Where a value came from, for error messages.
struct Raw {
    setting: &'static Setting,
    value: String,
    from_flag: bool,
}

impl Raw {
    fn invalid(&self, why: &str) -> ConfigError {
        let source = if self.from_flag {
            self.setting.flag
        } else {
            self.setting.env
        };
        ConfigError(format!(
            "invalid {source} value {:?}: {why} (flag {}, environment {})",
            self.value, self.setting.flag, self.setting.env
        ))
    }

    fn switch(&self) -> Result<bool, ConfigError> {
        match self.value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(self.invalid("expected 1 or 0 (true or false)")),
        }
    }

    fn number(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        let n: i64 = self
            .value
            .trim()
            .parse()
            .map_err(|_| self.invalid("not a whole number"))?;
        if n < min || n > max {
            return Err(self.invalid(&format!("must be between {min} and {max}")));
        }
        Ok(n)
    }
}

/// Flags given on the command line and the environment, looked up by a
/// setting's variable name.
struct Sources<'a> {
    flags: Vec<(&'static str, String)>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Sources<'_> {
    fn get(&self, env_name: &str) -> Raw {
        let setting = SETTINGS
            .iter()
            .find(|s| s.env == env_name)
            .expect("declared setting");
        let flagged = self.flags.iter().find(|(flag, _)| *flag == setting.flag);
        let (value, from_flag) = match flagged {
            Some((_, value)) => (value.clone(), true),
            None => match (self.env)(setting.env).filter(|v| !v.is_empty()) {
                Some(value) => (value, false),
                None => (setting.default.to_string(), false),
            },
        };
        Raw {
            setting,
            value,
            from_flag,
        }
    }

    fn listen(&self) -> Result<SocketAddr, ConfigError> {
        let port = self.get("PORT").number(1, 65535)?;
        let raw = self.get("EDGECRON_LISTEN");
        let text = raw.value.replace("$PORT", &port.to_string());
        text.parse().map_err(|_| {
            raw.invalid("expected HOST:PORT with a numeric address, such as 127.0.0.1:5000")
        })
    }

    /// The token from `EDGECRON_TOKEN` or from the token file. Errors never
    /// quote the value.
    fn token(&self) -> Result<Option<Secret>, ConfigError> {
        let inline = self.get("EDGECRON_TOKEN").value;
        let file = self.get("EDGECRON_TOKEN_FILE").value;
        match (inline.is_empty(), file.is_empty()) {
            (true, true) => Ok(None),
            (false, false) => Err(ConfigError(
                "set either EDGECRON_TOKEN or EDGECRON_TOKEN_FILE (--token-file), not both".into(),
            )),
            (false, true) => Secret::new(strip_newline(&inline))
                .map(Some)
                .map_err(|why| ConfigError(format!("EDGECRON_TOKEN {why}"))),
            (true, false) => read_token_file(&file).map(Some),
        }
    }
}

/// Reads a token file such as systemd's `$CREDENTIALS_DIRECTORY/token`.
fn read_token_file(path: &str) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read token file {path}: {e} (flag --token-file, environment EDGECRON_TOKEN_FILE)"
        ))
    })?;
    Secret::new(strip_newline(&text))
        .map_err(|why| ConfigError(format!("token file {path}: the token {why}")))
}

/// Editors and `echo` end files with a newline; it is not part of a token.
fn strip_newline(text: &str) -> &str {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

/// What the command-line client needs from the server's settings.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Where `serve` listens, with an unspecified address (0.0.0.0, ::)
    /// replaced by loopback.
    pub server: SocketAddr,
    pub token: Option<Secret>,
}

impl ClientSettings {
    /// Reads the same variables `serve` reads; `token_file` is the
    /// client's `--token-file` flag.
    pub fn load(
        token_file: Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ClientSettings, ConfigError> {
        let flags = token_file
            .map(|f| ("--token-file", f))
            .into_iter()
            .collect();
        let sources = Sources { flags, env };
        let mut server = sources.listen()?;
        if server.ip().is_unspecified() {
            server.set_ip(match server.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Ok(ClientSettings {
            server,
            token: sources.token()?,
        })
    }
}

impl Config {
    /// Reads settings from `args` (the words after `serve`) and the
    /// environment lookup `env`.
    pub fn load(
        args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let sources = Sources {
            flags: parse_flags(args)?,
            env,
        };
        let get = |env_name: &str| sources.get(env_name);

        let listen = sources.listen()?;
        let access = Access {
            token: sources.token()?,
            metrics_public: get("EDGECRON_METRICS_PUBLIC").switch()?,
        };
        let insecure = get("EDGECRON_INSECURE_NO_TOKEN").switch()?;
        if !listen.ip().is_loopback() && access.token.is_none() && !insecure {
            return Err(ConfigError(format!(
                "refusing to listen on {listen} without a token: anyone who reaches it could \
                 run commands as this user. Set EDGECRON_TOKEN, or put the token in a file named \
                 by --token-file or EDGECRON_TOKEN_FILE (under systemd, LoadCredential= and \
                 --token-file ${{CREDENTIALS_DIRECTORY}}/token); or accept the risk with \
                 --insecure-no-token (EDGECRON_INSECURE_NO_TOKEN=1)"
            )));
        }
        let http = HttpLimits {
            max_connections: get("EDGECRON_MAX_CONNECTIONS").number(1, 4096)? as usize,
            read_timeout: secs(get("EDGECRON_READ_TIMEOUT_SECONDS").number(1, 3600)?),
            max_header_bytes: get("EDGECRON_MAX_HEADER_BYTES").number(1024, 1 << 20)? as usize,
            max_body_bytes: get("EDGECRON_MAX_BODY_BYTES").number(1024, 64 << 20)? as usize,
        };

        let timezone = get("EDGECRON_TIMEZONE");
        crate::cron::parse_zone(&timezone.value).map_err(|e| timezone.invalid(&e.to_string()))?;

        let level = get("LOG_LEVEL");
        let log_level = level
            .value
            .parse()
            .map_err(|_| level.invalid("expected error, warn, info, debug or trace"))?;
        let format = get("LOG_FORMAT");
        let log_format = match format.value.to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(format.invalid("expected text or json")),
        };

        let db = get("SCHED_DB_PATH");
        if db.value.trim().is_empty() {
            return Err(db.invalid("must not be empty"));
        }

        let sync = get("EDGECRON_WAIT_CLOCK_SYNC");
        let clock_sync_file = match sync.value.as_str() {
            "off" | "0" | "false" | "no" => None,
            "systemd" | "1" | "true" | "yes" => Some(PathBuf::from(SYSTEMD_SYNC_FILE)),
            path if path.starts_with('/') => Some(PathBuf::from(path)),
            _ => return Err(sync.invalid("expected off, systemd or an absolute file path")),
        };

        Ok(Config {
            db_path: PathBuf::from(db.value),
            listen,
            poll_interval: secs(get("POLL_INTERVAL_SECONDS").number(1, 86_400)?),
            default_max_retries: get("DEFAULT_MAX_RETRIES").number(0, 100)?,
            default_retry_delay: get("DEFAULT_RETRY_DELAY").number(0, 86_400)?,
            default_timeout: get("EDGECRON_DEFAULT_TIMEOUT_SECONDS").number(1, 7 * 86_400)?,
            default_timezone: timezone.value,
            misfire_grace: secs(get("EDGECRON_MISFIRE_GRACE_SECONDS").number(0, 366 * 86_400)?),
            shutdown_grace: secs(get("EDGECRON_SHUTDOWN_GRACE_SECONDS").number(0, 3600)?),
            keep_runs: get("EDGECRON_KEEP_RUNS").number(1, 1_000_000)?,
            keep_days: get("EDGECRON_KEEP_DAYS").number(1, 36_500)?,
            access,
            http,
            max_env_entries: get("EDGECRON_MAX_ENV_ENTRIES").number(0, 4096)? as usize,
            max_running: get("EDGECRON_MAX_RUNNING").number(1, 10_000)? as usize,
            log_level,
            log_format,
            clock_sync_file,
        })
    }
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n as u64)
}

/// Splits `--flag value` and `--flag=value` pairs, refusing unknown flags.
fn parse_flags(args: &[String]) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (name, inline) = match word.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (word.as_str(), None),
        };
        let known = SETTINGS
            .iter()
            .find(|s| !s.flag.is_empty() && s.flag == name);
        let Some(setting) = known else {
            return Err(ConfigError(format!(
                "unknown option {word:?}; see `edgecron serve --help`"
            )));
        };
        let value = match inline {
            Some(value) => value,
            None if setting.is_switch() => "true".to_string(),
            None => words
                .next()
                .cloned()
                .ok_or_else(|| ConfigError(format!("option {name} needs a value")))?,
        };
        out.push((setting.flag, value));
    }
    Ok(out)
}

/// The `serve --help` text.
pub fn help() -> String {
    let mut text = String::from(
        "Usage: edgecron serve [OPTIONS]\n\nOptions (flag, environment variable, default):\n",
    );
    for s in SETTINGS {
        text.push_str(&format!(
            "  {:<24} {:<34} [{}]\n      {}\n",
            if s.flag.is_empty() { "-" } else { s.flag },
            s.env,
            s.default,
            s.doc
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&args, &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_match_the_prototype() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c.db_path, PathBuf::from("tasks.db"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.poll_interval, Duration::from_secs(30));
        assert_eq!((c.default_max_retries, c.default_retry_delay), (3, 60));
    }

    #[test]
    fn port_variable_moves_the_loopback_listener() {
        let c = load(&[], &[("PORT", "8080")]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn flag_beats_environment() {
        let c = load(
            &["--listen=127.0.0.1:7000"],
            &[("EDGECRON_LISTEN", "127.0.0.1:9000")],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 7000);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = load(&[], &[("POLL_INTERVAL_SECONDS", "soon")]).unwrap_err();
        assert!(err.0.contains("POLL_INTERVAL_SECONDS"), "{err}");
        let err = load(&["--bogus", "1"], &[]).unwrap_err();
        assert!(err.0.contains("--bogus"), "{err}");
        let err = load(&[], &[("EDGECRON_TIMEZONE", "Mars/Base")]).unwrap_err();
        assert!(err.0.contains("EDGECRON_TIMEZONE"), "{err}");
    }

    #[test]
    fn switches_take_no_value() {
        let c = load(&["--metrics-public", "--db", "x.db"], &[]).unwrap();
        assert!(c.access.metrics_public);
        assert_eq!(c.db_path, PathBuf::from("x.db"));
        let c = load(&["--metrics-public=0"], &[("EDGECRON_METRICS_PUBLIC", "1")]).unwrap();
        assert!(!c.access.metrics_public);
        let err = load(&[], &[("EDGECRON_METRICS_PUBLIC", "maybe")]).unwrap_err();
        assert!(err.0.contains("EDGECRON_METRICS_PUBLIC"), "{err}");
    }

    #[test]
    fn a_token_file_loses_its_trailing_newline() {
        let path = std::env::temp_dir().join(format!("edgecron-token-{}", std::process::id()));
        std::fs::write(&path, "abc123\n").unwrap();
        let file = path.to_str().unwrap();
        let c = load(&["--token-file", file], &[]).unwrap();
        assert_eq!(c.access.token.unwrap().expose(), "abc123");

        std::fs::write(&path, "\n").unwrap();
        let err = load(&[], &[("EDGECRON_TOKEN_FILE", file)]).unwrap_err();
        assert!(err.0.contains(file) && err.0.contains("empty"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = load(&["--token-file", file], &[]).unwrap_err();
        assert!(err.0.contains(file), "{err}");
    }

    #[test]
    fn token_errors_and_debug_output_never_show_the_token() {
        let err = load(&[], &[("EDGECRON_TOKEN", "has space")]).unwrap_err();
        assert!(
            err.0.contains("EDGECRON_TOKEN") && !err.0.contains("has space"),
            "{err}"
        );
        let c = load(&[], &[("EDGECRON_TOKEN", "hunter2hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn a_public_address_needs_a_token_or_an_explicit_opt_out() {
        let err = load(&["--listen", "0.0.0.0:5000"], &[]).unwrap_err();
        assert!(err.0.contains("EDGECRON_TOKEN_FILE"), "{err}");
        assert!(err.0.contains("--insecure-no-token"), "{err}");
        assert!(load(&["--listen", "0.0.0.0:5000", "--insecure-no-token"], &[]).is_ok());
        assert!(load(&["--listen", "[::]:5000"], &[("EDGECRON_TOKEN", "t")]).is_ok());
        assert!(load(&["--listen", "[::1]:5000"], &[]).is_ok());
    }

    #[test]
    fn the_client_talks_to_loopback_when_serve_listens_everywhere() {
        let env = |name: &str| (name == "EDGECRON_LISTEN").then(|| "0.0.0.0:7000".to_string());
        let c = ClientSettings::load(None, &env).unwrap();
        assert_eq!(c.server.to_string(), "127.0.0.1:7000");
        assert!(c.token.is_none());
    }
}
