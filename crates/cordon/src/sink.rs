//! Output cordon writes for the command to the caller's stdout or stderr:
//! the pipe relay of a sandboxed command's stdout and stderr (a terminal,
//! a FIFO) and `--tty`'s pty relay.
//!
//! The caller's side may stop taking output at any time: a terminal
//! stopped with XOFF (Ctrl-S), a frozen ssh connection, a terminal emulator
//! or a reader of a FIFO that stopped reading. cordon must never wait for
//! it in a blocking write, since the supervisor that enforces the deadline,
//! the CPU budget and the caller's signals is the one that writes (review
//! s13 R13-1). So a terminal or FIFO is written through a description of
//! cordon's own, non-blocking ([`sys::tty::reopen_for_writing`]; the
//! caller's shell keeps its flags), what it does not take at once is held
//! in a bounded buffer and written when it polls writable, and while
//! anything is held nothing more is read from the command, which then
//! blocks on its own pipe, as it would writing to a slow reader itself.
//!
//! A regular file never stalls: it is written through the caller's own
//! description (its offset and `O_APPEND` are the caller's), blocking, as
//! is anything that cannot be opened again (the fallback, which can still
//! block).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};

use cordon_core::sys;

/// Where relayed output goes.
#[derive(Debug)]
pub(crate) struct Sink {
    file: File,
    /// `file` is cordon's own non-blocking description.
    own: bool,
    /// Written to the command's side, not yet taken by the caller's.
    pending: Vec<u8>,
    /// A write failed (the reader is gone): the rest is discarded, and
    /// the command keeps running, as it would with a descriptor of its own
    /// that failed.
    failed: bool,
}

impl Sink {
    /// A sink for `fd`, one of cordon's stdout and stderr.
    pub(crate) fn new(fd: BorrowedFd<'_>) -> io::Result<Sink> {
        use std::io::IsTerminal;
        use std::os::unix::fs::FileTypeExt;
        let stalls = fd.is_terminal() || sys::metadata(fd).is_ok_and(|m| m.file_type().is_fifo());
        let (file, own) = match stalls.then(|| sys::tty::reopen_for_writing(fd)) {
            Some(Ok(own)) => (File::from(own), true),
            _ => (File::from(fd.try_clone_to_owned()?), false),
        };
        Ok(Sink { file, own, pending: vec![], failed: false })
    }

    /// The descriptor written to, e.g. for terminal checks.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Whether more output may be read for this sink: nothing is held.
    pub(crate) fn has_room(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether output is held, waiting for the caller's side.
    pub(crate) fn is_holding(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The descriptor and events to poll while output is held.
    pub(crate) fn poll(&self) -> Option<(BorrowedFd<'_>, libc::c_short)> {
        self.is_holding().then(|| (self.file.as_fd(), libc::POLLOUT))
    }

    /// Passes `data` on: what the caller's side takes now is written, the
    /// rest is held.
    pub(crate) fn put(&mut self, data: &[u8]) {
        if self.failed {
            return;
        }
        if !self.own {
            if self.file.write_all(data).is_err() {
                self.fail();
            }
            return;
        }
        let mut rest = data;
        if self.pending.is_empty() {
            match self.write_some(rest) {
                Some(n) => rest = &rest[n..],
                None => return self.fail(),
            }
        }
        self.pending.extend_from_slice(rest);
        self.flush();
    }

    /// Writes what is held, as far as the caller's side takes it (after it
    /// polled writable, or in error: then the write fails).
    pub(crate) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.pending);
        match self.write_some(&held) {
            Some(n) => self.pending = held[n..].to_vec(),
            None => self.fail(),
        }
    }

    /// Drops what is held (the deadline passed, or cordon was asked to
    /// end); returns how many bytes.
    pub(crate) fn drop_held(&mut self) -> u64 {
        let n = self.pending.len() as u64;
        self.pending = vec![];
        n
    }

    /// Writes as much of `data` as the caller's side takes now; `None`
    /// when the write failed.
    fn write_some(&mut self, data: &[u8]) -> Option<usize> {
        let mut done = 0;
        while done < data.len() {
            match self.file.write(&data[done..]) {
                Ok(0) => return None,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(done)
    }

    fn fail(&mut self) {
        self.failed = true;
        self.pending = vec![];
    }
}
