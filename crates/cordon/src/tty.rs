//! Interactive runs: the command's own pty, relayed to the caller's
//! terminal (as `docker run -t` and `ssh -t` do), and the caller's terminal
//! put in raw mode meanwhile and always restored.
//!
//! The pty is allocated inside the sandbox, from its own devpts instance
//! (see `cordon_core::sys::child`); cordon holds only the master. Keys reach
//! the command as bytes: Ctrl-C becomes a `SIGINT` from the pty's line
//! discipline to the command's foreground process group, once. The caller's
//! terminal is never passed into the sandbox, so nothing inside can change
//! its modes, its size or its foreground process group, or push input into
//! it (`TIOCSTI`).
//!
//! # Bounds
//!
//! Input waiting for the pty is at most [`RELAY_BUFFER`] bytes (cordon stops
//! reading its stdin until the pty takes them); output goes to cordon's
//! stdout through a [`Sink`], which never blocks: while the caller's
//! terminal (or whatever reads cordon's stdout) does not take it, nothing
//! more is read from the pty, and the command blocks writing to it.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use cordon_core::enforce::{PtyRequest, PtyStderr, WindowSize};
use cordon_core::plan::TerminalUse;
use cordon_core::sys;
use cordon_core::sys::tty::Modes;

use crate::runner::{Capture, Input, RunRequest};
use crate::sink::Sink;

/// Whether the command gets a terminal of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tty {
    /// No: it gets cordon's stdin, stdout and stderr as they are. Where one
    /// of them is the caller's terminal, the command may read and write it
    /// but not control it (see `cordon_core::plan::TerminalPlan`).
    #[default]
    Off,
    /// A pty of the sandbox's own on its stdin and stdout (and stderr, when
    /// cordon's stderr is a terminal), relayed to cordon's stdin and stdout;
    /// the caller's terminal, if stdin is one, is in raw mode meanwhile.
    /// Needs [`Capture::PassThrough`] and [`Input::Inherit`].
    Relay,
}

/// Most bytes of input cordon holds for the pty.
pub const RELAY_BUFFER: usize = 64 * 1024;

/// What the plan needs to know about the command's stdio.
pub(crate) fn terminal_use(req: &RunRequest) -> TerminalUse {
    match req.tty {
        Tty::Relay => TerminalUse::Pty,
        Tty::Off => TerminalUse::Caller([
            req.stdin == Input::Inherit && io::stdin().is_terminal(),
            req.capture == Capture::PassThrough && io::stdout().is_terminal(),
            req.capture == Capture::PassThrough && io::stderr().is_terminal(),
        ]),
    }
}

/// The pty the command gets: the caller's window size, stderr on the pty
/// only when cordon's own stderr is a terminal (so `2>file` still works).
pub(crate) fn pty_request() -> PtyRequest {
    let stderr = if io::stderr().is_terminal() { PtyStderr::Pty } else { PtyStderr::Inherit };
    PtyRequest { size: caller_window_size().unwrap_or(WindowSize::DEFAULT), stderr }
}

/// The size of the caller's terminal: the first of cordon's stdin, stdout
/// and stderr that is one.
fn caller_window_size() -> Option<WindowSize> {
    let size = |fd: std::os::fd::BorrowedFd<'_>| sys::tty::window_size(fd).ok();
    size(io::stdin().as_fd()).or_else(|| size(io::stdout().as_fd())).or_else(|| size(io::stderr().as_fd()))
}

/// The modes of cordon's stdin before it went raw, for the panic hook.
static SAVED: Mutex<Option<Modes>> = Mutex::new(None);

fn restore_saved() {
    let saved = SAVED.lock().map(|s| *s).unwrap_or_else(|p| *p.into_inner());
    if let Some(modes) = saved {
        let _ = modes.apply(io::stdin().as_fd());
    }
}

/// cordon's stdin (a terminal) in raw mode; its modes come back when this
/// is dropped, when cordon stops for job control ([`RawMode::suspend`]),
/// and when cordon panics (a hook restores them before the panic is
/// reported; release builds then abort without unwinding).
pub(crate) struct RawMode {
    saved: Modes,
}

impl RawMode {
    /// Puts stdin in raw mode, when it is a terminal.
    pub(crate) fn enter() -> io::Result<Option<RawMode>> {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = Modes::of(stdin.as_fd())?;
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_saved();
                previous(info);
            }));
        });
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        saved.raw().apply(stdin.as_fd())?;
        Ok(Some(RawMode { saved }))
    }

    /// Gives the terminal its modes back (before cordon stops).
    pub(crate) fn suspend(&self) {
        let _ = self.saved.apply(io::stdin().as_fd());
    }

    /// Raw again (after cordon continued).
    pub(crate) fn resume(&self) {
        let _ = self.saved.raw().apply(io::stdin().as_fd());
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.suspend();
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The relay between cordon's stdin/stdout and the pty's master.
pub(crate) struct Relay {
    master: File,
    input: Option<File>,
    output: Sink,
    /// Input not yet taken by the pty.
    pending: Vec<u8>,
    master_open: bool,
}

impl Relay {
    /// Relays `master` (made non-blocking) to duplicates of cordon's stdin
    /// and stdout.
    pub(crate) fn new(master: OwnedFd) -> io::Result<Relay> {
        sys::set_nonblocking(master.as_fd())?;
        Ok(Relay {
            master: File::from(master),
            input: Some(File::from(io::stdin().as_fd().try_clone_to_owned()?)),
            output: Sink::new(io::stdout().as_fd())?,
            pending: vec![],
            master_open: true,
        })
    }

    /// cordon's stdin, while the relay wants to read it.
    pub(crate) fn input_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.input.as_ref().filter(|_| self.pending.len() < RELAY_BUFFER && self.master_open).map(|f| f.as_fd())
    }

    /// The master and the events to wait for on it: output while the
    /// caller's side took everything, room for pending input. Not polled
    /// when neither (a master that hung up would wake the loop at once).
    pub(crate) fn master_poll(&self) -> Option<(std::os::fd::BorrowedFd<'_>, libc::c_short)> {
        let mut events = if self.output.has_room() { libc::POLLIN } else { 0 };
        if !self.pending.is_empty() {
            events |= libc::POLLOUT;
        }
        (self.master_open && events != 0).then(|| (self.master.as_fd(), events))
    }

    /// cordon's stdout and the events to wait for on it, while it holds
    /// output.
    pub(crate) fn output_poll(&self) -> Option<(std::os::fd::BorrowedFd<'_>, libc::c_short)> {
        self.output.poll()
    }

    /// Writes held output as far as cordon's stdout takes it.
    pub(crate) fn flush_output(&mut self) {
        self.output.flush();
    }

    /// Where output goes.
    pub(crate) fn sink(&mut self) -> &mut Sink {
        &mut self.output
    }

    /// Reads cordon's stdin into the pending input. At its end: a terminal
    /// hung up, so nothing more is read; anything else (`--tty` with piped
    /// input) gets the pty's end-of-file character (`^D`), which a program
    /// reading the pty in canonical mode sees as the end of its input. A
    /// read the kernel refused because cordon's group is in the background
    /// (`EIO`, with `SIGTTIN` blocked) is no end: the job must stop.
    pub(crate) fn read_input(&mut self, buf: &mut [u8]) -> InputEvent {
        let Some(input) = &mut self.input else { return InputEvent::Quiet };
        let room = RELAY_BUFFER.saturating_sub(self.pending.len()).min(buf.len());
        match input.read(&mut buf[..room]) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) && sys::tty::is_foreground(input.as_fd()) == Some(false) => {
                return InputEvent::Background;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => {
                if !input.is_terminal() {
                    self.pending.push(0x04);
                }
                self.input = None;
            }
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
        }
        self.write_pending();
        InputEvent::Quiet
    }

    /// Reads no more input (a job that cannot stop for it: an orphaned
    /// process group, where the kernel refuses the read for good).
    pub(crate) fn end_input(&mut self) {
        self.input = None;
    }

    /// Moves pending input into the pty, as far as it takes it.
    pub(crate) fn write_pending(&mut self) {
        while !self.pending.is_empty() {
            match self.master.write(&self.pending) {
                Ok(n) => drop(self.pending.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.pending.clear();
                    return;
                }
            }
        }
    }

    /// Copies what the pty has to cordon's stdout, while cordon's stdout
    /// takes it (see [`Sink`]). Returns false once the pty hung up (every
    /// process of the run closed it).
    pub(crate) fn read_output(&mut self, buf: &mut [u8]) -> bool {
        self.copy_output(buf, false)
    }

    /// After the run: reads everything the pty still has into the sink,
    /// which holds what cordon's stdout does not take at once (at most
    /// the pty's buffer: nothing writes to it any more).
    pub(crate) fn drain_output(&mut self, buf: &mut [u8]) {
        self.copy_output(buf, true);
    }

    fn copy_output(&mut self, buf: &mut [u8], all: bool) -> bool {
        loop {
            if !all && !self.output.has_room() {
                return true;
            }
            match self.master.read(buf) {
                Ok(0) => break,
                // Nobody reads cordon's stdout any more: the sink drops
                // it, and the command is not blocked on it.
                Ok(n) => self.output.put(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // EIO: the slave side is closed everywhere
            }
        }
        self.master_open = false;
        false
    }

    /// Gives the pty the caller's window size; the kernel sends `SIGWINCH`
    /// to the command's foreground process group when it changed.
    pub(crate) fn follow_window_size(&self) {
        if let Some(size) = caller_window_size() {
            let _ = sys::tty::set_window_size(self.master.as_fd(), size);
        }
    }
}

/// The caller's terminal as the command's stdin without a pty
/// ([`cordon_core::plan::TerminalPlan::Relayed`]): cordon reads the
/// terminal and writes what it read into a pipe, the command's stdin.
///
/// cordon reads only while the command has taken everything it was given:
/// the pipe holds one page, and so is writable exactly when it is empty
/// (`sys::shrink_pipe`). So a command that reads line by line gets each
/// line as it is typed, and one that never reads its stdin (`cordon run
/// cmd | less`) takes at most one read's worth of keys from other programs
/// of the job. Reads are made on a description of cordon's own, which
/// never blocks (`sys::tty::reopen_for_reading`).
///
/// Job control: cordon reads in the caller's process group, with `SIGTTIN`
/// blocked, so in the background the kernel refuses the read (`EIO`) and
/// nothing typed is taken; the supervisor then stops the job as the kernel
/// would ([`InputEvent::Background`]). In the background it tries at once
/// when the command has taken everything, as a command reading its stdin
/// would: like `ssh` or `docker run -i`, a background run whose stdin is
/// the terminal stops ("Stopped (tty input)") even if the command would
/// never read it (`< /dev/null` runs it in the background).
#[derive(Debug)]
pub(crate) struct TerminalInput {
    terminal: File,
    /// The command's stdin; `None` once the input ended.
    pipe: Option<File>,
    /// Read from the terminal, not yet taken by the pipe.
    pending: Vec<u8>,
    /// The pipe was empty when last seen: the command took everything.
    drained: bool,
}

/// What a read of the terminal came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InputEvent {
    /// Nothing for the supervisor to do.
    Quiet,
    /// cordon's process group is in the background: the job must stop
    /// (`SIGTTIN`) before anything is read.
    Background,
}

impl TerminalInput {
    /// Relays `terminal` (cordon's stdin) into `pipe` (the write end of the
    /// command's stdin).
    pub(crate) fn new(terminal: std::os::fd::BorrowedFd<'_>, pipe: OwnedFd) -> io::Result<TerminalInput> {
        sys::shrink_pipe(pipe.as_fd())?;
        sys::set_nonblocking(pipe.as_fd())?;
        // Our own description of the terminal; where it cannot be opened
        // again (it belongs to another user, who passed it), the shared
        // one, read only once it polled readable.
        let terminal = match sys::tty::reopen_for_reading(terminal) {
            Ok(fd) => fd,
            Err(_) => terminal.try_clone_to_owned()?,
        };
        Ok(TerminalInput {
            terminal: File::from(terminal),
            pipe: Some(File::from(pipe)),
            pending: vec![],
            drained: true,
        })
    }

    /// Whether cordon should read the terminal now: the command took
    /// everything, and its stdin is still open.
    fn wants_input(&self) -> bool {
        self.pipe.is_some() && self.drained && self.pending.is_empty()
    }

    /// Whether the terminal should be read at once, without waiting for
    /// input: cordon's group is in the background (the read fails and the
    /// job stops, as it would for the command).
    pub(crate) fn read_at_once(&self) -> bool {
        self.wants_input() && sys::tty::is_foreground(self.terminal.as_fd()) == Some(false)
    }

    /// The terminal and the events to wait for on it, when cordon reads it.
    pub(crate) fn terminal_poll(&self) -> Option<(std::os::fd::BorrowedFd<'_>, libc::c_short)> {
        self.wants_input().then(|| (self.terminal.as_fd(), libc::POLLIN))
    }

    /// The pipe and the events to wait for on it: writable (empty) while
    /// it holds what the command has not taken, and always its errors (the
    /// command closed its stdin).
    pub(crate) fn pipe_poll(&self) -> Option<(std::os::fd::BorrowedFd<'_>, libc::c_short)> {
        let events = if self.drained && self.pending.is_empty() { 0 } else { libc::POLLOUT };
        self.pipe.as_ref().map(|p| (p.as_fd(), events))
    }

    /// The pipe polled `revents`: writable (the command took everything),
    /// or its reader is gone.
    pub(crate) fn on_pipe(&mut self, revents: libc::c_short) {
        if revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            self.end();
        } else if revents & libc::POLLOUT != 0 {
            self.drained = true;
            self.write_pending();
        }
    }

    /// Reads what the terminal has into the pipe. At its end (`^D` typed,
    /// or the terminal hung up) the command's stdin is closed: it reads
    /// end of file.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> InputEvent {
        if !self.wants_input() {
            return InputEvent::Quiet;
        }
        // One page at most: an empty pipe takes it whole.
        let room = buf.len().min(4096);
        match self.terminal.read(&mut buf[..room]) {
            Ok(0) => self.end(),
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.write_pending();
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EIO)
                    && sys::tty::is_foreground(self.terminal.as_fd()) == Some(false) =>
            {
                return InputEvent::Background;
            }
            Err(_) => self.end(),
        }
        InputEvent::Quiet
    }

    /// Closes the command's stdin: it reads end of file. Used when the job
    /// cannot stop for input (an orphaned process group, where the kernel
    /// refuses the read for good).
    pub(crate) fn end(&mut self) {
        self.pipe = None;
        self.pending.clear();
    }

    fn write_pending(&mut self) {
        let Some(pipe) = &mut self.pipe else { return };
        while !self.pending.is_empty() {
            match pipe.write(&self.pending) {
                Ok(n) => {
                    self.drained = false;
                    drop(self.pending.drain(..n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.end(),
            }
        }
    }
}
