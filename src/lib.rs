//! edgecron: a cron-style task scheduler for small machines.
