//! Every setting of `edgecron serve`, declared once: its flag, environment
//! variable, default and doc line. Values are validated here, at startup,
//! so a bad one fails at boot rather than when a task fires.
//!
//! Precedence: command-line flag, then environment variable, then default.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One declared setting.
pub struct Setting {
    pub flag: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
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
        flag: "--http-threads",
        env: "EDGECRON_HTTP_THREADS",
        default: "4",
        doc: "threads reading HTTP requests",
    },
    Setting {
        flag: "--max-body-bytes",
        env: "EDGECRON_MAX_BODY_BYTES",
        default: "1048576",
        doc: "largest request body accepted (bigger gets 413)",
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
    pub http_threads: usize,
    pub max_body_bytes: usize,
    pub log_level: log::LevelFilter,
    pub log_format: LogFormat,
    /// Firing waits until this file exists.
    pub clock_sync_file: Option<PathBuf>,
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

impl Config {
    /// Reads settings from `args` (the words after `serve`) and the
    /// environment lookup `env`.
    pub fn load(
        args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let flags = parse_flags(args)?;
        let get = |env_name: &str| -> Raw {
            let setting = SETTINGS
                .iter()
                .find(|s| s.env == env_name)
                .expect("declared setting");
            match flags.iter().find(|(flag, _)| *flag == setting.flag) {
                Some((_, value)) => Raw {
                    setting,
                    value: value.clone(),
                    from_flag: true,
                },
                None => match env(setting.env).filter(|v| !v.is_empty()) {
                    Some(value) => Raw {
                        setting,
                        value,
                        from_flag: false,
                    },
                    None => Raw {
                        setting,
                        value: setting.default.to_string(),
                        from_flag: false,
                    },
                },
            }
        };

        let port = get("PORT").number(1, 65535)?;
        let listen_raw = get("EDGECRON_LISTEN");
        let listen_text = listen_raw.value.replace("$PORT", &port.to_string());
        let listen = listen_text.parse().map_err(|_| {
            listen_raw.invalid("expected HOST:PORT with a numeric address, such as 127.0.0.1:5000")
        })?;

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
            http_threads: get("EDGECRON_HTTP_THREADS").number(1, 64)? as usize,
            max_body_bytes: get("EDGECRON_MAX_BODY_BYTES").number(1024, 64 << 20)? as usize,
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
        let Some(setting) = SETTINGS.iter().find(|s| s.flag == name) else {
            return Err(ConfigError(format!(
                "unknown option {word:?}; see `edgecron serve --help`"
            )));
        };
        let value = match inline {
            Some(value) => value,
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
            s.flag, s.env, s.default, s.doc
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
}
