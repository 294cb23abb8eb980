//! Names the process behind a notifying thread, as notices and records show
//! it: `name, pid N`, the pid in the sandbox's own namespace.
//!
//! The name is read while the thread still waits for its answer, so a
//! process that exits right after its `connect()` is still named. Reading
//! `/proc/<tid>/status` (for the thread group and the namespace's pid) and
//! then `/proc/<tgid>/comm` costs the supervisor two opens and a large
//! file per connect, so [`Processes`] keeps, per thread, what cannot change
//! for its life (its process's id, in both namespaces) and a descriptor of
//! its process's `comm`, which is read again each time (a process renames
//! itself with `exec` or `PR_SET_NAME`). A thread is told by its pidfd's
//! pidfs inode, which no other thread ever gets: a thread id the kernel
//! reuses is a new thread, never a hit.
//!
//! [`Processes`] also keeps each notifying thread's pidfd, by thread id, so
//! that its next `connect()` needs no `pidfd_open`. A kept pidfd stands for
//! one thread whose id never changes; once that thread is gone it reaches
//! nothing (`ESRCH`), even when the kernel gave its id to a new thread,
//! which then gets a pidfd of its own. So a descriptor taken through a kept
//! pidfd is the notifying thread's, as one taken through a new pidfd is
//! (the notification is checked again afterwards either way).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use cordon_core::sys::notify;

/// A thread, for as long as the system runs (its pidfs inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TaskId(pub u64);

/// Threads remembered per run at most; then it starts over.
const MAX_KNOWN: usize = 64;

/// What stays true of a thread for its life, and its process's name.
struct Known {
    /// The process's pid in the sandbox's namespace.
    ns_pid: String,
    /// `/proc/<tgid>/comm`, open.
    comm: File,
}

/// A notifying thread's pidfd, and what it identifies.
struct Thread {
    pidfd: OwnedFd,
    task: Option<TaskId>,
}

/// Pidfds and process names of the threads that connected, per run.
#[derive(Default)]
pub(crate) struct Processes {
    threads: HashMap<u32, Thread>,
    known: HashMap<TaskId, Known>,
}

/// A descriptor of a notifying thread, taken through its kept pidfd.
pub(crate) enum Taken {
    /// The duplicate, and the thread.
    Socket(OwnedFd, Option<TaskId>),
    /// `pidfd_getfd` failed with this errno (say `EBADF`: no such descriptor).
    Failed(i32),
    /// No pidfd is kept for a live thread of this id: open one.
    Unknown,
}

impl Processes {
    /// A duplicate of descriptor `fd` of thread `tid`, through the pidfd
    /// kept for it.
    pub fn take_fd(&mut self, tid: u32, fd: i32) -> Taken {
        let Some(thread) = self.threads.get(&tid) else { return Taken::Unknown };
        match notify::pidfd_getfd(thread.pidfd.as_fd(), fd) {
            Ok(sock) => Taken::Socket(sock, thread.task),
            // The kept thread is gone; `tid` may be a new one's.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                self.threads.remove(&tid);
                Taken::Unknown
            }
            Err(e) => Taken::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    /// Keeps `pidfd`, opened for thread `tid` while it was notifying, and
    /// returns the thread's identity.
    pub fn keep_pidfd(&mut self, tid: u32, pidfd: OwnedFd) -> Option<TaskId> {
        let task = notify::pidfd_inode(pidfd.as_fd()).ok().flatten().map(TaskId);
        if self.threads.len() >= MAX_KNOWN {
            self.threads.clear();
        }
        self.threads.insert(tid, Thread { pidfd, task });
        task
    }

    /// `name, pid N` of the process of thread `tid`, known as `task` (when
    /// the kernel names threads that way), escaped for the terminal.
    pub fn name(&mut self, tid: u32, task: Option<TaskId>) -> Option<String> {
        let Some(task) = task else { return process_of(tid) };
        if let Some(known) = self.known.get(&task) {
            // Gone: its process ended (the descriptor outlives it).
            match read_comm(&known.comm) {
                Some(comm) => return Some(render(&comm, &known.ns_pid)),
                None => {
                    self.known.remove(&task);
                }
            }
        }
        let (tgid, ns_pid) = ids_of(tid)?;
        let comm = File::open(format!("/proc/{tgid}/comm")).ok()?;
        let name = render(&read_comm(&comm)?, &ns_pid);
        if self.known.len() >= MAX_KNOWN {
            self.known.clear();
        }
        self.known.insert(task, Known { ns_pid, comm });
        Some(name)
    }
}

/// `name, pid N` of the process behind thread `tid`, read afresh.
pub(crate) fn process_of(tid: u32) -> Option<String> {
    let (tgid, ns_pid) = ids_of(tid)?;
    let comm = std::fs::read_to_string(format!("/proc/{tgid}/comm")).ok()?;
    Some(render(comm.trim_end_matches('\n'), &ns_pid))
}

/// The thread group of `tid`, and its pid in the innermost namespace.
fn ids_of(tid: u32) -> Option<(String, String)> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let tgid = field("Tgid:")?.to_owned();
    let ns_pid = field("NStgid:")?.split_whitespace().last()?.to_owned();
    Some((tgid, ns_pid))
}

/// The current contents of an open `comm` (16 bytes at most, with its
/// newline); `None` once its process is gone.
fn read_comm(comm: &File) -> Option<String> {
    let mut buf = [0u8; 64];
    let got = comm.read_at(&mut buf, 0).ok()?;
    let text = String::from_utf8_lossy(&buf[..got]);
    Some(text.trim_end_matches('\n').to_owned())
}

fn render(comm: &str, ns_pid: &str) -> String {
    format!("{}, pid {ns_pid}", super::ledger::escape_control(comm))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_task() -> (u32, TaskId) {
        let tid = std::process::id();
        let pidfd = cordon_core::sys::notify::pidfd_open_thread(tid).expect("pidfd");
        let ino = cordon_core::sys::notify::pidfd_inode(std::os::fd::AsFd::as_fd(&pidfd)).expect("fstat");
        (tid, TaskId(ino.expect("pidfs (Linux 6.9)")))
    }

    /// A process that renames itself is named by its new name on its next
    /// connect, though its thread is remembered. Control: the first name.
    #[test]
    fn a_remembered_thread_is_named_by_its_current_name() {
        // The renaming runs in a child process of its own (a test thread
        // renaming the harness' main thread would disturb other tests).
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "read x; exec /bin/sleep 30"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let pid = child.id();
        let pidfd = cordon_core::sys::notify::pidfd_open_thread(pid).expect("pidfd");
        let task = cordon_core::sys::notify::pidfd_inode(std::os::fd::AsFd::as_fd(&pidfd)).unwrap().map(TaskId);
        assert!(task.is_some(), "no pidfs here");
        let mut processes = Processes::default();
        // `spawn` returns once the child released its parent's memory in
        // `exec`, which is before the kernel sets the new `comm`: until
        // then it is named after the spawning test thread.
        let named_sh = poll(|| processes.name(pid, task).is_some_and(|n| n.starts_with("sh, pid ")));
        assert!(named_sh, "never named sh: {:?}", processes.name(pid, task));
        let mut child = child;
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"\n").unwrap();
        let renamed = poll(|| processes.name(pid, task).is_some_and(|n| n.starts_with("sleep, ")));
        let _ = child.kill();
        let _ = child.wait();
        assert!(renamed, "the name after exec was not read afresh");
        // Ended: not named from what was remembered.
        assert_eq!(processes.name(pid, task), None);
    }

    /// Two threads with different pidfs inodes are never confused: the
    /// cache is keyed by the inode, not the thread id.
    #[test]
    fn pidfs_inodes_tell_threads_apart() {
        let (tid, task) = own_task();
        let other = std::thread::spawn(|| {
            // Its id, from /proc/thread-self (`<pid>/task/<tid>`).
            let tid: u32 = std::fs::read_link("/proc/thread-self")
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let pidfd = cordon_core::sys::notify::pidfd_open_thread(tid).expect("pidfd");
            cordon_core::sys::notify::pidfd_inode(std::os::fd::AsFd::as_fd(&pidfd)).unwrap().unwrap()
        })
        .join()
        .unwrap();
        assert_ne!(TaskId(other), task, "thread {tid}");
        // The same thread's pidfds share it.
        assert_eq!(own_task().1, task);
    }

    /// Calls `cond` every 10 ms for up to 10 s.
    fn poll(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..1000 {
            if cond() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }
}
