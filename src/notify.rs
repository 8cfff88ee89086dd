//! systemd readiness (sd_notify): the socket is connected before the
//! sandbox goes on; afterwards the publisher can only send on it.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0:?} is not a unix socket address")]
    Address(String),
    #[error("connecting to NOTIFY_SOCKET {0:?}: {1}")]
    Connect(String, #[source] nix::Error),
}

/// The service manager's notification socket, when there is one.
pub struct Notifier {
    socket: OwnedFd,
}

impl Notifier {
    /// Connects to `$NOTIFY_SOCKET` if set (a path, or `@name` for an
    /// abstract socket); `None` when not run by a service manager.
    pub fn connect() -> Result<Option<Self>, NotifyError> {
        let Some(address) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let text = address.to_string_lossy().into_owned();
        let unix = match text.strip_prefix('@') {
            Some(name) => UnixAddr::new_abstract(name.as_bytes()),
            None if text.starts_with('/') => UnixAddr::new(text.as_str()),
            None => return Err(NotifyError::Address(text)),
        }
        .map_err(|_| NotifyError::Address(text.clone()))?;
        let socket = socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| NotifyError::Connect(text.clone(), e))?;
        socket::connect(socket.as_raw_fd(), &unix).map_err(|e| NotifyError::Connect(text, e))?;
        Ok(Some(Self { socket }))
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Best effort: a service manager that went away is not our failure.
    pub fn send(&self, state: &str) {
        if let Err(e) = socket::send(
            self.socket.as_raw_fd(),
            state.as_bytes(),
            MsgFlags::MSG_NOSIGNAL,
        ) {
            tracing::warn!("warning: telling the service manager {state:?}: {e}");
        }
    }
}
