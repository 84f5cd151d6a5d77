//! Placeholder sd_notify module (replaced by the packaging work).
pub fn ready() {}
pub fn stopping() {}
pub fn watchdog() {}
pub fn watchdog_interval() -> Option<std::time::Duration> {
    None
}
