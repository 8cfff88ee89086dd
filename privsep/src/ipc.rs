//! The helper → publisher protocol: one postcard-encoded [`HelperMessage`] per
//! SOCK_SEQPACKET datagram, `Hello` first and then only `Snapshot`s. The stream
//! is one-way: each end is shut down in the direction it never uses, and the
//! endpoint types only offer the operation their side performs; on the
//! publisher's side they also keep the order ([`PublisherEnd::handshake`]
//! then [`Snapshots`]).
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::errno::check;
use serde::{Deserialize, Serialize};

/// Bumped whenever [`HelperMessage`] changes shape or meaning.
pub const PROTOCOL_VERSION: u32 = 2;

/// Most CPUs a message may describe; equals `BARRIERD_MAX_CPUS` in
/// bpf/barrierd_shared.h (the helper checks this at compile time).
pub const MAX_CPUS: usize = 4096;

/// Largest encoding of any valid message: variant tag, sequence length
/// (varints of at most 5 bytes), `MAX_CPUS` varint u64s of at most 10 and
/// one more u64.
pub const MAX_MESSAGE_LEN: usize = 1 + 5 + 10 * MAX_CPUS + 10;

/// Everything the helper ever says. The helper sends snapshots borrowed from
/// its own buffer; decoding always yields an owned one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelperMessage<'a> {
    /// First and only once: the protocol spoken and the number of possible
    /// CPUs, which every snapshot then describes.
    Hello { protocol: u32, ncpu: u32 },
    /// The latest kernel-entry time of every CPU, CLOCK_MONOTONIC ns, indexed
    /// by CPU number; 0 for a CPU that has not been seen yet. A quiescent CPU
    /// is reported at the time of the read, so it shares the largest value.
    /// `demand_ns`: when a client last blocked in a barrier wait (0: never).
    Snapshot {
        last_ns: Cow<'a, [u64]>,
        demand_ns: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("socket call failed: {0}")]
    Io(#[from] io::Error),
    #[error("file descriptor {0} is not a SOCK_SEQPACKET socket")]
    NotSeqpacket(i32),
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_LEN}-byte cap")]
    TooLong(usize),
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("short send: {sent} of {len} bytes")]
    ShortSend { sent: usize, len: usize },
    #[error("first message was not a hello")]
    NoHello,
    #[error("a second hello")]
    RepeatedHello,
    #[error("protocol version {0}, expected {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("helper counts {helper} CPUs, the publisher {publisher}")]
    CpuCount { helper: u32, publisher: usize },
}

/// A snapshot as the publisher receives it (see [`HelperMessage::Snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub last_ns: Vec<u64>,
    pub demand_ns: u64,
}

/// Decodes one datagram. Rejects oversize input before parsing and trailing
/// bytes after it, so that every accepted datagram is exactly one message.
pub fn decode(datagram: &[u8]) -> Result<HelperMessage<'static>, IpcError> {
    if datagram.len() > MAX_MESSAGE_LEN {
        return Err(IpcError::TooLong(datagram.len()));
    }
    let (message, rest) = postcard::take_from_bytes(datagram)?;
    if !rest.is_empty() {
        return Err(IpcError::TrailingBytes(rest.len()));
    }
    Ok(message)
}

/// Encodes `message` into `buf`, which must hold [`MAX_MESSAGE_LEN`] bytes.
pub fn encode<'b>(message: &HelperMessage, buf: &'b mut [u8]) -> Result<&'b [u8], IpcError> {
    Ok(postcard::to_slice(message, buf)?)
}

/// A connected SOCK_SEQPACKET pair: `(helper's end, publisher's end)`, both
/// close-on-exec (the launcher moves the helper's end into place itself).
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    check(rc)?;
    // SAFETY: socketpair succeeded, so both descriptors are open and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn check_seqpacket(fd: BorrowedFd<'_>) -> Result<(), IpcError> {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `kind` and `len` are valid for the kernel to write an int into.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || kind != libc::SOCK_SEQPACKET {
        return Err(IpcError::NotSeqpacket(fd.as_raw_fd()));
    }
    Ok(())
}

fn shutdown(fd: BorrowedFd<'_>, how: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we borrow.
    check(unsafe { libc::shutdown(fd.as_raw_fd(), how) })?;
    Ok(())
}

/// The helper's end: it can only send.
pub struct HelperEnd {
    socket: OwnedFd,
    buf: Vec<u8>,
}

impl HelperEnd {
    pub fn new(socket: OwnedFd) -> Result<Self, IpcError> {
        check_seqpacket(socket.as_fd())?;
        shutdown(socket.as_fd(), libc::SHUT_RD)?;
        Ok(Self {
            socket,
            buf: vec![0; MAX_MESSAGE_LEN],
        })
    }

    /// Sends one message; never raises SIGPIPE (a gone publisher is an error).
    pub fn send(&mut self, message: &HelperMessage) -> Result<(), IpcError> {
        let bytes = encode(message, &mut self.buf)?;
        // SAFETY: `bytes` is a valid slice for the duration of the call.
        let sent = unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        let sent = check(sent)?;
        if sent as usize != bytes.len() {
            return Err(IpcError::ShortSend {
                sent: sent as usize,
                len: bytes.len(),
            });
        }
        Ok(())
    }
}

impl AsFd for HelperEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// The publisher's end before the hello: it can only receive, and only
/// [`PublisherEnd::handshake`], which checks the hello and turns it into
/// [`Snapshots`]. So the sequence (hello first and once, then snapshots) is
/// the types', not the caller's, to keep.
pub struct PublisherEnd {
    socket: OwnedFd,
    buf: Vec<u8>,
}

impl PublisherEnd {
    pub fn new(socket: OwnedFd) -> Result<Self, IpcError> {
        check_seqpacket(socket.as_fd())?;
        shutdown(socket.as_fd(), libc::SHUT_WR)?;
        Ok(Self {
            socket,
            // One spare byte: a datagram that fills it is over the cap.
            buf: vec![0; MAX_MESSAGE_LEN + 1],
        })
    }

    /// Receives the first message, which must be a hello in our protocol
    /// for `ncpu` CPUs; `Ok(None)` when the helper hung up first (it failed
    /// its setup). Blocks: call it once the socket is readable.
    pub fn handshake(mut self, ncpu: usize) -> Result<Option<Snapshots>, IpcError> {
        match self.recv()? {
            None => Ok(None),
            Some(HelperMessage::Hello { protocol, .. }) if protocol != PROTOCOL_VERSION => {
                Err(IpcError::Version(protocol))
            }
            Some(HelperMessage::Hello { ncpu: helper, .. }) if helper as usize != ncpu => {
                Err(IpcError::CpuCount {
                    helper,
                    publisher: ncpu,
                })
            }
            Some(HelperMessage::Hello { .. }) => Ok(Some(Snapshots { end: self })),
            Some(HelperMessage::Snapshot { .. }) => Err(IpcError::NoHello),
        }
    }

    /// Receives and decodes one message; `Ok(None)` when the helper has gone.
    fn recv(&mut self) -> Result<Option<HelperMessage<'static>>, IpcError> {
        // SAFETY: `buf` is valid for writes of its whole length.
        let len = unsafe {
            libc::recv(
                self.socket.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                // MSG_TRUNC makes recv return the datagram's real length.
                libc::MSG_TRUNC,
            )
        };
        match check(len)? {
            0 => Ok(None),
            n if n as usize > MAX_MESSAGE_LEN => Err(IpcError::TooLong(n as usize)),
            n => decode(&self.buf[..n as usize]).map(Some),
        }
    }
}

/// The publisher's end after the hello: only snapshots may follow.
pub struct Snapshots {
    end: PublisherEnd,
}

impl Snapshots {
    /// The next snapshot; `Ok(None)` when the helper has gone.
    pub fn recv(&mut self) -> Result<Option<Snapshot>, IpcError> {
        match self.end.recv()? {
            None => Ok(None),
            Some(HelperMessage::Hello { .. }) => Err(IpcError::RepeatedHello),
            Some(HelperMessage::Snapshot { last_ns, demand_ns }) => Ok(Some(Snapshot {
                last_ns: last_ns.into_owned(),
                demand_ns,
            })),
        }
    }
}

impl AsFd for Snapshots {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.end.as_fd()
    }
}

impl AsFd for PublisherEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(message: HelperMessage) {
        let mut buf = vec![0; MAX_MESSAGE_LEN];
        let bytes = encode(&message, &mut buf).unwrap().to_vec();
        assert_eq!(decode(&bytes).unwrap(), message);
    }

    #[test]
    fn messages_roundtrip() {
        roundtrip(HelperMessage::Hello {
            protocol: PROTOCOL_VERSION,
            ncpu: 2,
        });
        roundtrip(HelperMessage::Snapshot {
            last_ns: vec![0, 1, u64::MAX].into(),
            demand_ns: 5,
        });
    }

    #[test]
    fn largest_snapshot_fits_the_cap() {
        roundtrip(HelperMessage::Snapshot {
            last_ns: vec![u64::MAX; MAX_CPUS].into(),
            demand_ns: u64::MAX,
        });
    }

    #[test]
    fn oversize_trailing_and_unknown_input_is_rejected() {
        assert!(matches!(
            decode(&vec![1; MAX_MESSAGE_LEN + 1]),
            Err(IpcError::TooLong(_))
        ));
        let mut buf = vec![0; 64];
        let mut bytes = encode(
            &HelperMessage::Snapshot {
                last_ns: vec![7].into(),
                demand_ns: 0,
            },
            &mut buf,
        )
        .unwrap()
        .to_vec();
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(IpcError::TrailingBytes(1))));
        assert!(matches!(decode(&[9]), Err(IpcError::Malformed(_))));
        assert!(matches!(decode(&[]), Err(IpcError::Malformed(_))));
    }

    #[test]
    fn ends_are_one_way() {
        let (helper, publisher) = socketpair().unwrap();
        let mut helper = HelperEnd::new(helper).unwrap();
        let mut publisher = PublisherEnd::new(publisher).unwrap();
        let hello = HelperMessage::Hello {
            protocol: PROTOCOL_VERSION,
            ncpu: 3,
        };
        helper.send(&hello).unwrap();
        assert_eq!(publisher.recv().unwrap(), Some(hello));
        // SAFETY: a plain send on a descriptor we own.
        let rc = unsafe {
            libc::send(
                publisher.as_fd().as_raw_fd(),
                [0u8].as_ptr().cast(),
                1,
                libc::MSG_NOSIGNAL,
            )
        };
        assert_eq!(rc, -1, "the publisher's end must not be able to send");
        drop(helper);
        assert_eq!(publisher.recv().unwrap(), None);
    }

    fn pair() -> (HelperEnd, PublisherEnd) {
        let (helper, publisher) = socketpair().unwrap();
        (
            HelperEnd::new(helper).unwrap(),
            PublisherEnd::new(publisher).unwrap(),
        )
    }

    fn hello(protocol: u32, ncpu: u32) -> HelperMessage<'static> {
        HelperMessage::Hello { protocol, ncpu }
    }

    fn snapshot() -> HelperMessage<'static> {
        HelperMessage::Snapshot {
            last_ns: vec![4, 5, 6].into(),
            demand_ns: 7,
        }
    }

    #[test]
    fn the_sequence_is_one_hello_then_snapshots() {
        let (mut helper, publisher) = pair();
        helper.send(&hello(PROTOCOL_VERSION, 3)).unwrap();
        helper.send(&snapshot()).unwrap();
        helper.send(&hello(PROTOCOL_VERSION, 3)).unwrap();
        let mut snapshots = publisher.handshake(3).unwrap().unwrap();
        assert_eq!(
            snapshots.recv().unwrap(),
            Some(Snapshot {
                last_ns: vec![4, 5, 6],
                demand_ns: 7
            })
        );
        assert!(matches!(snapshots.recv(), Err(IpcError::RepeatedHello)));

        let (mut helper, publisher) = pair();
        helper.send(&snapshot()).unwrap();
        assert!(matches!(publisher.handshake(3), Err(IpcError::NoHello)));

        let (mut helper, publisher) = pair();
        helper.send(&hello(PROTOCOL_VERSION + 1, 3)).unwrap();
        assert!(matches!(
            publisher.handshake(3),
            Err(IpcError::Version(v)) if v == PROTOCOL_VERSION + 1
        ));

        let (mut helper, publisher) = pair();
        helper.send(&hello(PROTOCOL_VERSION, 2)).unwrap();
        assert!(matches!(
            publisher.handshake(3),
            Err(IpcError::CpuCount {
                helper: 2,
                publisher: 3
            })
        ));

        // A helper that fails its setup hangs up before its hello.
        let (helper, publisher) = pair();
        drop(helper);
        assert!(matches!(publisher.handshake(3), Ok(None)));

        let (mut helper, publisher) = pair();
        helper.send(&hello(PROTOCOL_VERSION, 3)).unwrap();
        let mut snapshots = publisher.handshake(3).unwrap().unwrap();
        drop(helper);
        assert_eq!(snapshots.recv().unwrap(), None);
    }

    #[test]
    fn oversize_datagram_is_refused_before_decoding() {
        let (helper, publisher) = socketpair().unwrap();
        let mut publisher = PublisherEnd::new(publisher).unwrap();
        let big = vec![0u8; MAX_MESSAGE_LEN + 100];
        // SAFETY: a plain send of a valid buffer on a descriptor we own.
        let sent = unsafe { libc::send(helper.as_raw_fd(), big.as_ptr().cast(), big.len(), 0) };
        assert_eq!(sent as usize, big.len());
        assert!(matches!(publisher.recv(), Err(IpcError::TooLong(n)) if n == big.len()));
    }
}
