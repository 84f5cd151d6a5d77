//! edgecron: a cron-style task scheduler for small machines.
//!
//! The binary (`main.rs`) is glue: it reads settings, opens the store and
//! starts the scheduler loop and the HTTP workers. See ARCHITECTURE.md for
//! the map of modules and the rules they keep.

pub mod api;
pub mod client;
pub mod clock;
pub mod config;
pub mod cron;
pub mod exec;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod scheduler;
pub mod store;
