//! A minimal sd_notify client: datagrams to `$NOTIFY_SOCKET` (sd_notify(3)), no libsystemd.
//!
//! `NOTIFY_SOCKET` is a filesystem path or, with a leading `@`, a Linux abstract socket name.
//! The watchdog interval comes from `WATCHDOG_USEC` (honoured only when `WATCHDOG_PID` is unset
//! or ours); we ping at half of it, as sd_watchdog_enabled(3) advises.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    socket: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// From the environment; `None` when not run under a notify-aware supervisor.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        Self::new(&path.to_string_lossy()).ok()
    }

    pub fn new(path: &str) -> std::io::Result<Notifier> {
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?
        } else if path.starts_with('/') {
            std::os::unix::net::SocketAddr::from_pathname(path)?
        } else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "NOTIFY_SOCKET: not a path or @name"));
        };
        Ok(Notifier { socket: UnixDatagram::unbound()?, addr })
    }

    /// Sends one state string, e.g. `READY=1` or `STATUS=...` (newline-separated assignments).
    pub fn notify(&self, state: &str) -> std::io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr).map(|_| ())
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, or `None` without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_string_lossy().trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_abstract_sockets_receive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.sock");
        let rx = UnixDatagram::bind(&p).unwrap();
        Notifier::new(p.to_str().unwrap()).unwrap().notify("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("tapir-daemon-test-{}", std::process::id());
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&a).unwrap();
        Notifier::new(&format!("@{name}")).unwrap().notify("WATCHDOG=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        assert!(Notifier::new("relative").is_err());
    }
}
