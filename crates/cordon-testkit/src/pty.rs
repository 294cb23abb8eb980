//! `Pty`: a real pseudo-terminal for tests that run cordon on a terminal
//! (Ctrl-C, `--tty`, raw mode, window sizes, what a sandbox can do to the
//! caller's terminal), checked from the host side.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use cordon_core::sys::tty::{Modes, WindowSize};

use crate::procs::poll_until;

/// A pty pair from the host's `/dev/ptmx`. The test plays the terminal
/// emulator: it writes keys to the master ([`Pty::type_keys`]) and a thread
/// collects everything the programs on the slave print
/// ([`Pty::transcript`]). The slave is handed to a program as its stdin,
/// stdout and stderr with [`Pty::stdio`]; running it under `setsid --ctty`
/// makes the pty its controlling terminal, as a login shell's is.
#[derive(Debug)]
pub struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    seen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    /// Set by the reader when it found nothing to read, cleared when it
    /// found something (before the bytes reach `seen`).
    idle: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pty {
    /// A new pty of `rows` x `cols`.
    ///
    /// # Panics
    ///
    /// When the host cannot allocate one (a broken test machine).
    pub fn open(rows: u16, cols: u16) -> Pty {
        let (master, slave) = cordon_core::sys::tty::open_pty().unwrap_or_else(|e| panic!("cannot open a pty: {e}"));
        cordon_core::sys::tty::set_window_size(master.as_fd(), WindowSize { rows, cols })
            .unwrap_or_else(|e| panic!("cannot size the pty: {e}"));
        let seen = Arc::new(Mutex::new(vec![]));
        let stop = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(false));
        let reader = {
            let master = master.try_clone().expect("dup the pty master");
            let (seen, stop, idle) = (seen.clone(), stop.clone(), idle.clone());
            std::thread::spawn(move || collect(master, &seen, &stop, &idle))
        };
        Pty { master, slave, seen, stop, idle, reader: Some(reader) }
    }

    /// The slave, for one of a program's standard descriptors.
    pub fn stdio(&self) -> Stdio {
        Stdio::from(self.slave.try_clone().expect("dup the pty slave"))
    }

    /// Writes `keys` as if typed (`b"\x03"` is Ctrl-C).
    pub fn type_keys(&self, keys: &[u8]) {
        let mut f = std::fs::File::from(self.master.try_clone().expect("dup the pty master"));
        f.write_all(keys).unwrap_or_else(|e| panic!("cannot type on the pty: {e}"));
    }

    /// Waits (up to a minute) until `shown` is on the screen, then types
    /// `keys`.
    ///
    /// # Panics
    ///
    /// When `shown` never shows, with the transcript.
    pub fn type_after(&self, shown: &str, keys: &[u8]) {
        self.expect(shown);
        self.type_keys(keys);
    }

    /// Waits (up to a minute) until `shown` is on the screen.
    ///
    /// # Panics
    ///
    /// When it never shows, with the transcript.
    pub fn expect(&self, shown: &str) {
        assert!(
            self.wait_for(shown, Duration::from_secs(60)),
            "{shown:?} never showed on the pty:\n{}",
            self.transcript()
        );
    }

    /// Everything printed on the pty so far (lossy UTF-8).
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Waits (bounded) until everything written to the pty so far is in
    /// the transcript.
    pub fn settle(&self) {
        let pending = || {
            cordon_core::sys::poll(&[(self.master.as_fd(), libc::POLLIN)], 0)
                .is_ok_and(|r| r.first().is_some_and(|r| *r != 0))
        };
        poll_until(Duration::from_secs(10), || !pending() && self.idle.load(Ordering::SeqCst));
    }

    /// Waits (bounded) until the transcript contains `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || self.transcript().contains(needle))
    }

    /// The terminal's modes, as the slave side has them.
    pub fn modes(&self) -> Modes {
        Modes::of(self.slave.as_fd()).unwrap_or_else(|e| panic!("cannot read the pty's modes: {e}"))
    }

    /// The terminal's device number (`st_rdev` of the slave), as
    /// `/proc/<pid>/stat` shows a controlling terminal.
    pub fn device(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let slave = std::fs::File::from(self.slave.try_clone().expect("dup the pty slave"));
        slave.metadata().unwrap_or_else(|e| panic!("cannot stat the pty: {e}")).rdev()
    }

    /// The terminal file's permission bits, as the host sees them.
    pub fn mode(&self) -> u32 {
        use std::os::unix::fs::MetadataExt;
        let slave = std::fs::File::from(self.slave.try_clone().expect("dup the pty slave"));
        slave.metadata().unwrap_or_else(|e| panic!("cannot stat the pty: {e}")).mode() & 0o7777
    }

    /// Sets the terminal file's permission bits.
    pub fn set_mode(&self, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let slave = std::fs::File::from(self.slave.try_clone().expect("dup the pty slave"));
        slave
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("cannot chmod the pty: {e}"));
    }

    /// The terminal's window size.
    pub fn window_size(&self) -> WindowSize {
        cordon_core::sys::tty::window_size(self.master.as_fd())
            .unwrap_or_else(|e| panic!("cannot read the pty's size: {e}"))
    }

    /// Whether the terminal is in exclusive mode (`TIOCEXCL`).
    pub fn is_exclusive(&self) -> bool {
        cordon_core::sys::tty::is_exclusive(self.slave.as_fd())
            .unwrap_or_else(|e| panic!("cannot read the pty's exclusive mode: {e}"))
    }

    /// Bytes of input waiting on the terminal, typed or pushed (`TIOCSTI`).
    pub fn input_pending(&self) -> usize {
        cordon_core::sys::tty::input_pending(self.slave.as_fd())
            .unwrap_or_else(|e| panic!("cannot read the pty's input queue: {e}"))
    }

    /// Resizes the terminal, as a terminal emulator does when its window
    /// changes: the slave's foreground process group gets `SIGWINCH`.
    pub fn resize(&self, rows: u16, cols: u16) {
        cordon_core::sys::tty::set_window_size(self.master.as_fd(), WindowSize { rows, cols })
            .unwrap_or_else(|e| panic!("cannot resize the pty: {e}"));
    }

    /// Stops collecting output and returns the whole transcript.
    pub fn finish(mut self) -> String {
        self.stop_reader();
        self.transcript()
    }

    fn stop_reader(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        self.stop_reader();
    }
}

/// Reads the master until told to stop (the test keeps the slave open, so
/// the master never reaches end of file on its own).
fn collect(master: OwnedFd, seen: &Mutex<Vec<u8>>, stop: &AtomicBool, idle: &AtomicBool) {
    use std::io::Read;
    let mut f = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    loop {
        let ready = cordon_core::sys::poll(&[(f.as_fd(), libc::POLLIN)], 50).unwrap_or_default();
        if ready.first().is_some_and(|r| *r != 0) {
            idle.store(false, Ordering::SeqCst);
            match f.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&buf[..n]),
            }
        } else {
            idle.store(true, Ordering::SeqCst);
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}
