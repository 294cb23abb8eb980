//! Terminals: pseudo-terminal pairs, terminal modes and window sizes, for
//! cordon's side of an interactive run (the pty relay) and for tests that
//! drive cordon through a real pty.
//!
//! The sandbox's own pty is allocated by init inside the sandbox (see
//! [`super::child`]); [`open_pty`] here allocates from the caller's
//! `/dev/ptmx`, which only dev mode and tests use.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

/// A terminal's size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl WindowSize {
    /// The size a terminal gets when no other is known.
    pub const DEFAULT: WindowSize = WindowSize { rows: 24, cols: 80 };
}

/// `TIOCGWINSZ`: the window size of the terminal `fd`.
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<WindowSize> {
    // SAFETY: winsize is plain data; the kernel fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize to a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) }.into())?;
    Ok(WindowSize { rows: ws.ws_row, cols: ws.ws_col })
}

/// `TIOCSWINSZ`: sets the window size of the terminal `fd` (on a pty
/// master, the kernel then sends `SIGWINCH` to the slave's foreground
/// process group).
pub fn set_window_size(fd: BorrowedFd<'_>, size: WindowSize) -> io::Result<()> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }.into()).map(drop)
}

/// Whether the calling process's group is the foreground process group of
/// its controlling terminal `fd` (`TIOCGPGRP`): `None` when `fd` is no
/// terminal, or not this process's controlling terminal (job control does
/// not apply to it then).
pub fn is_foreground(fd: BorrowedFd<'_>) -> Option<bool> {
    let mut group: libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t to a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPGRP, &mut group) }.into()).ok()?;
    // SAFETY: getpgrp takes no arguments and cannot fail.
    Some(group == unsafe { libc::getpgrp() })
}

/// Opens the terminal `fd` refers to again, non-blocking, for reading: a
/// description of cordon's own, so that reading it never blocks and never
/// changes the flags of the one it shares with the caller's shell. Through
/// `/proc/self/fd`, without making it anyone's controlling terminal.
pub fn reopen_for_reading(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: a valid C string; integer flags; the result is checked.
    let new = cvt(unsafe { libc::open(path.as_ptr(), flags) }.into())?;
    // SAFETY: open succeeded; the descriptor is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(new).unwrap_or(-1)) })
}

/// Opens the terminal or FIFO `fd` refers to again, non-blocking, for
/// writing: a description of cordon's own, so that a write that would
/// block (a terminal stopped with XOFF, a reader that stopped reading)
/// returns `EAGAIN` instead, and the flags of the description the caller's
/// shell shares stay as they are. Through `/proc/self/fd`, which names the
/// open file itself, never a path that could have been swapped; never as
/// the controlling terminal. Fails (`ENXIO`) for a FIFO nobody reads, and
/// where `/proc` is not mounted or the file is not the caller's to open.
pub fn reopen_for_writing(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::O_WRONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: a valid C string; integer flags; the result is checked.
    let new = cvt(unsafe { libc::open(path.as_ptr(), flags) }.into())?;
    // SAFETY: open succeeded; the descriptor is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(new).unwrap_or(-1)) })
}

/// A terminal's modes (`struct termios`).
#[derive(Clone, Copy)]
pub struct Modes(libc::termios);

impl std::fmt::Debug for Modes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Modes")
            .field("iflag", &self.0.c_iflag)
            .field("oflag", &self.0.c_oflag)
            .field("cflag", &self.0.c_cflag)
            .field("lflag", &self.0.c_lflag)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Modes {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.0, &other.0);
        (a.c_iflag, a.c_oflag, a.c_cflag, a.c_lflag, a.c_line, a.c_cc)
            == (b.c_iflag, b.c_oflag, b.c_cflag, b.c_lflag, b.c_line, b.c_cc)
    }
}

impl Modes {
    /// `tcgetattr`: the modes of the terminal `fd`; `ENOTTY` when it is none.
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<Modes> {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a live local of the right type.
        cvt(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }.into())?;
        Ok(Modes(t))
    }

    /// These modes made raw (`cfmakeraw`): no echo, no line editing, no
    /// signals from keys, no output processing.
    pub fn raw(&self) -> Modes {
        let mut t = self.0;
        // SAFETY: cfmakeraw only edits the structure it is given.
        unsafe { libc::cfmakeraw(&mut t) };
        Modes(t)
    }

    /// Whether output from a background process group stops it with
    /// `SIGTTOU` (`TOSTOP`, `stty tostop`).
    pub fn stops_background_output(&self) -> bool {
        self.0.c_lflag & libc::TOSTOP != 0
    }

    /// Whether the terminal echoes input (`ECHO`).
    pub fn echoes(&self) -> bool {
        self.0.c_lflag & libc::ECHO != 0
    }

    /// `tcsetattr(TCSADRAIN)`: applies these modes to `fd` once its pending
    /// output is written.
    pub fn apply(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: reads the live termios behind `self`.
        cvt(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSADRAIN, &self.0) }.into()).map(drop)
    }
}

/// A new pseudo-terminal pair from this mount namespace's `/dev/ptmx`:
/// `(master, slave)`, both close-on-exec, the slave not made anyone's
/// controlling terminal.
pub fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: a valid C string; the flags are plain integers.
    let fd = cvt(unsafe { libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) }.into())?;
    // SAFETY: open succeeded; the descriptor is ours alone.
    let master = unsafe { OwnedFd::from_raw_fd(libc::c_int::try_from(fd).unwrap_or(-1)) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a live local.
    cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) }.into())?;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let peer =
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    let peer = cvt(peer.into())?;
    // SAFETY: the ioctl returned a new descriptor that is ours alone.
    let slave = unsafe { OwnedFd::from_raw_fd(libc::c_int::try_from(peer).unwrap_or(-1)) };
    Ok((master, slave))
}

/// The number of the pty behind a master (`TIOCGPTN`): its slave is
/// `/dev/pts/<n>` in the devpts instance it came from.
pub fn pty_number(master: BorrowedFd<'_>) -> io::Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int to a live local.
    cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) }.into())?;
    Ok(n)
}

/// `TIOCGEXCL`: whether the terminal is in exclusive mode (`TIOCEXCL`:
/// further opens fail with `EBUSY`, except for root).
pub fn is_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    // SAFETY: TIOCGEXCL writes one int to a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGEXCL, &mut v) }.into())?;
    Ok(v != 0)
}

/// `FIONREAD` on a terminal: bytes of input waiting to be read.
pub fn input_pending(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut v: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut v) }.into())?;
    Ok(usize::try_from(v).unwrap_or(0))
}
