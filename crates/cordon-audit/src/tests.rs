use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use cordon_core::policy::{Mode, Policy};
use cordon_testkit::Dir;
use sha2::Digest;

use super::*;
use crate::log::default_path_from;
use crate::record::sha256_hex;
use crate::trail::log_path_from;

fn record(n: usize) -> AuditRecord {
    let mut r = AuditRecord::new(&format!("REQ{n:04}"), "4bf92f3577b34da6a3ce929d0e0e4736", "process");
    r.subject.plugin = Some(if n.is_multiple_of(2) { "@acme/even" } else { "@acme/odd" }.to_string());
    r.outcome = if n.is_multiple_of(3) { "TIMEOUT".into() } else { Outcome::Ok.as_str().into() };
    r.duration_ms = n as f64;
    r
}

/// The key folder of the test log at `path`: beside it.
fn keys_for(path: &Path) -> KeyFolder {
    KeyFolder::At(path.parent().unwrap().join("keys"))
}

/// Opens a log signing with a key beside it (never the real state folder).
fn open(path: &Path) -> AuditLog {
    AuditLog::open_with(path, &keys_for(path)).unwrap()
}

/// Verifies with the keys and latest checkpoint beside the log.
fn check(path: &Path) -> Result<Verified, VerifyError> {
    verify(path, &Trust::for_log(path, &keys_for(path)))
}

fn records_in(path: &Path) -> usize {
    check(path).unwrap().records
}

fn log_with(dir: &Dir, n: usize) -> AuditLog {
    let log = open(&dir.path().join("state/cordon/audit.jsonl"));
    for i in 1..=n {
        log.append(record(i)).unwrap();
    }
    log
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

#[test]
fn records_are_chained_lines() {
    let dir = Dir::new("audit-chain");
    let log = log_with(&dir, 3);
    let l = lines(log.path());
    assert_eq!(l.len(), 3);
    let first: AuditRecord = serde_json::from_str(&l[0]).unwrap();
    assert_eq!(first.prev, sha256_hex(b""));
    let second: AuditRecord = serde_json::from_str(&l[1]).unwrap();
    assert_eq!(second.prev, sha256_hex(l[0].as_bytes()));
    assert_eq!(second.request_id, "REQ0002");
    assert_eq!(records_in(log.path()), 3);
}

#[test]
fn open_creates_private_folders_and_file() {
    let dir = Dir::new("audit-perms");
    let path = dir.path().join("a/b/audit.jsonl");
    open(&path);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(records_in(&path), 0);
}

#[test]
fn default_path_follows_xdg() {
    let p = |x: Option<&str>, h: Option<&str>| default_path_from(x.map(Into::into), h.map(Into::into));
    assert_eq!(p(Some("/s"), Some("/h")), Some(PathBuf::from("/s/cordon/audit.jsonl")));
    assert_eq!(p(Some("relative"), Some("/h")), Some(PathBuf::from("/h/.local/state/cordon/audit.jsonl")));
    assert_eq!(p(None, Some("/h")), Some(PathBuf::from("/h/.local/state/cordon/audit.jsonl")));
    assert_eq!(p(None, None), None);
    assert_eq!(p(Some(""), Some("")), None);
}

#[test]
fn a_record_stays_on_one_line() {
    let dir = Dir::new("audit-newline");
    let log = open(&dir.path().join("audit.jsonl"));
    let mut r = record(1);
    r.error = Some("line one\nline two\r\n".into());
    log.append(r).unwrap();
    assert_eq!(lines(log.path()).len(), 1);
    assert_eq!(
        filter(log.path(), &Filter::default()).unwrap().records[0].error.as_deref(),
        Some("line one\nline two\r\n")
    );
}

#[test]
fn verify_finds_an_edited_record() {
    let dir = Dir::new("audit-edit");
    let log = log_with(&dir, 4);
    let mut l = lines(log.path());
    l[1] = l[1].replace("\"outcome\":\"ok\"", "\"outcome\":\"TIMEOUT\"");
    write_lines(log.path(), &l);
    let e = check(log.path()).unwrap_err();
    assert!(matches!(e, VerifyError::Broken { line: 3, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3: hash chain broken: line 2 was edited, or records between lines 2 and 3 were removed",
            log.path().display()
        )
    );
}

#[test]
fn verify_finds_a_removed_record() {
    let dir = Dir::new("audit-remove");
    let log = log_with(&dir, 4);
    let mut l = lines(log.path());
    l.remove(2);
    write_lines(log.path(), &l);
    assert!(matches!(check(log.path()), Err(VerifyError::Broken { line: 3, .. })));
}

#[test]
fn verify_finds_removed_first_records() {
    let dir = Dir::new("audit-head");
    let log = log_with(&dir, 3);
    let mut l = lines(log.path());
    l.remove(0);
    write_lines(log.path(), &l);
    let e = check(log.path()).unwrap_err();
    assert!(matches!(e, VerifyError::HeadRemoved { .. }), "{e:?}");
    assert_eq!(e.line(), Some(1));
}

#[test]
fn verify_finds_reordered_records() {
    let dir = Dir::new("audit-reorder");
    let log = log_with(&dir, 4);
    let mut l = lines(log.path());
    l.swap(1, 2);
    write_lines(log.path(), &l);
    // Line 2 now holds the third record, which was written after the
    // second, now on line 3.
    let e = check(log.path()).unwrap_err();
    assert!(matches!(e, VerifyError::Reordered { line: 2, after: 3, .. }), "{e:?}");
    assert!(
        e.to_string().ends_with(":2: record out of order: it was written right after the record now on line 3"),
        "{e}"
    );
}

#[test]
fn a_torn_last_line_is_reported_as_torn_and_append_recovers() {
    let dir = Dir::new("audit-torn");
    let log = log_with(&dir, 2);
    // A third record cut short by a crash: its bytes, without the end.
    let mut third = serde_json::to_vec(&record(3)).unwrap();
    third.truncate(third.len() - 20);
    fs::OpenOptions::new().append(true).open(log.path()).unwrap().write_all(&third).unwrap();
    let v = check(log.path()).unwrap();
    assert_eq!((v.records, v.torn.clone()), (2, vec![3]), "torn, not tampered: {v:?}");
    assert_eq!(v.latest.as_ref().map(|l| l.0), Some(2));

    // The next append starts on a fresh line; the torn one stays reported,
    // and every other record is still readable.
    log.append(record(4)).unwrap();
    let v = check(log.path()).unwrap();
    assert_eq!((v.records, v.torn), (3, vec![3]));
    let f = filter(log.path(), &Filter::default()).unwrap();
    assert_eq!(f.records.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["REQ0001", "REQ0002", "REQ0004"]);
    assert_eq!(f.malformed_lines, [3]);
    // The new record chains onto the torn line's bytes, so nothing after it
    // can be slipped in unnoticed either.
    let l = lines(log.path());
    let last: AuditRecord = serde_json::from_str(&l[3]).unwrap();
    assert_eq!(last.prev, sha256_hex(l[2].as_bytes()));
    assert_eq!(last.seq, Some(4));
    // A malformed line that nothing chains over is an edit, not a crash.
    let mut edited = lines(log.path());
    edited[1] = "{ not a record".into();
    edited.truncate(2);
    write_lines(log.path(), &edited);
    assert!(matches!(verify(log.path(), &Trust::default()), Err(VerifyError::Malformed { line: 2, .. })));
}

#[test]
fn verify_of_a_missing_log_names_it() {
    let e = verify(Path::new("/nonexistent/audit.jsonl"), &Trust::default()).unwrap_err();
    assert_eq!(e.to_string(), "cannot read audit log /nonexistent/audit.jsonl");
}

#[test]
fn concurrent_threads_do_not_fork_the_chain() {
    let dir = Dir::new("audit-threads");
    let path = dir.path().join("audit.jsonl");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                // Each thread has its own handle, as separate processes would.
                let log = open(&path);
                for i in 0..25 {
                    log.append(record(t * 100 + i)).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(records_in(&path), 100);
}

/// Runs [`child_helper`] in a new process of this test binary.
fn child(mode: &str, log: &Path, arg: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "tests::child_helper", "--ignored", "--nocapture", "--test-threads=1"])
        .env("CORDON_AUDIT_CHILD", mode)
        .env("CORDON_AUDIT_LOG", log)
        .env("CORDON_AUDIT_ARG", arg)
        .stdin(Stdio::null());
    cmd
}

#[test]
#[ignore = "helper: run in a child process by other tests"]
fn child_helper() {
    let mode = std::env::var("CORDON_AUDIT_CHILD").expect("run by child()");
    let log = open(Path::new(&std::env::var("CORDON_AUDIT_LOG").unwrap()));
    let arg = std::env::var("CORDON_AUDIT_ARG").unwrap();
    match mode.as_str() {
        "append" => {
            let tag: usize = arg.parse().unwrap();
            for i in 0..30 {
                log.append(record(tag * 1000 + i)).unwrap();
            }
        }
        "begin-and-hang" | "begin-record-and-hang" => {
            let path = log.path().to_owned();
            let trail = AuditTrail::open_with(&path, &keys_for(&path)).unwrap();
            let subject = Subject { handler: Some("forecast".into()), ..Subject::default() };
            let _started = trail.begin(&subject, &arg, Some(Mode::Process)).unwrap();
            if mode == "begin-record-and-hang" {
                // Killed between its record and the end of its journal entry.
                trail.log().append(AuditRecord { request_id: arg.clone(), ..record(5) }).unwrap();
            }
            // libtest prints "test NAME ... " before the output, on the same line.
            println!("<child-ready>");
            std::thread::sleep(Duration::from_secs(120));
        }
        "runs" => {
            // Runs one after another, saying when each began and ended.
            let path = log.path().to_owned();
            let trail = AuditTrail::open_with(&path, &keys_for(&path)).unwrap();
            for i in 0..40 {
                let id = format!("{arg}-{i}");
                let run = trail.begin(&Subject::default(), &id, Some(Mode::Dev)).unwrap();
                println!("<began {id}>");
                let ok = Ending { outcome: Outcome::Ok, error: None, ..failed_setup("") };
                run.complete(ok, &[]).unwrap();
                println!("<done {id}>");
            }
        }
        "group" => {
            // A service with four request threads, killed by the parent.
            let path = log.path().to_owned();
            let w = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap();
            std::thread::scope(|scope| {
                for t in 0..4 {
                    let w = &w;
                    scope.spawn(move || {
                        for i in 0.. {
                            let id = format!("G{t}-{i}");
                            let run = w.begin(&Subject::default(), &id, Some(Mode::Dev)).wait().unwrap();
                            println!("<accepted {id}>");
                            run.complete(ok_ending(), &[]).wait().unwrap();
                            println!("<durable {id}>");
                        }
                    });
                }
            });
        }
        "same-id" | "group-same-id" => {
            // Two tenants' runs with one request id (a shared idempotency
            // key); tenant a's completes, tenant b's is still running.
            let path = log.path().to_owned();
            let tenant = |t: &str| Subject { tenant: Some(t.into()), ..Subject::default() };
            if mode == "same-id" {
                let trail = AuditTrail::open_with(&path, &keys_for(&path)).unwrap();
                let a = trail.begin(&tenant("a"), &arg, Some(Mode::Process)).unwrap();
                let _b = trail.begin(&tenant("b"), &arg, Some(Mode::Process)).unwrap();
                a.complete(ok_ending(), &[]).unwrap();
                println!("<child-ready>");
                std::thread::sleep(Duration::from_secs(120));
            } else {
                let w = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap();
                let a = w.begin(&tenant("a"), &arg, Some(Mode::Process)).wait().unwrap();
                let _b = w.begin(&tenant("b"), &arg, Some(Mode::Process)).wait().unwrap();
                a.complete(ok_ending(), &[]).wait().unwrap();
                // One more commit, which writes a's end line.
                w.record_unstarted(&tenant("c"), "OTHER", None, failed_setup("x"), &[]).wait().unwrap();
                println!("<child-ready>");
                std::thread::sleep(Duration::from_secs(120));
            }
        }
        "group-compact" => {
            // Five runs begun, two completed, the journal compacted.
            let path = log.path().to_owned();
            let opts = GroupOptions { compact_at: 1, ..GroupOptions::default() };
            let w = GroupWriter::open(&path, &keys_for(&path), opts).unwrap();
            let runs: Vec<GroupRun> = (0..5)
                .map(|i| w.begin(&Subject::default(), &format!("C{i}"), Some(Mode::Dev)).wait().unwrap())
                .collect();
            let mut runs = runs.into_iter();
            for r in runs.by_ref().take(2) {
                r.complete(ok_ending(), &[]).wait().unwrap();
            }
            // One more commit, so the journal is compacted after the ends.
            w.record_unstarted(&Subject::default(), "C-unstarted", None, failed_setup("x"), &[]).wait().unwrap();
            println!("<child-ready>");
            let _keep: Vec<GroupRun> = runs.collect();
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown mode {other}"),
    }
}

#[test]
fn concurrent_processes_do_not_fork_the_chain() {
    let dir = Dir::new("audit-procs");
    let path = dir.path().join("audit.jsonl");
    let children: Vec<_> =
        (1..=3).map(|t| child("append", &path, &t.to_string()).stdout(Stdio::null()).spawn().unwrap()).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(records_in(&path), 90);
}

/// Opens the trail of the log at `path` (recording lost runs) and says how
/// many it recorded.
fn recover(path: &Path) -> usize {
    AuditTrail::open_with(path, &keys_for(path)).unwrap().recovered()
}

fn journal_len(path: &Path) -> u64 {
    fs::metadata(crate::journal::path_of(path)).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn a_sigkilled_run_is_recorded_as_lost_on_the_next_start() {
    let dir = Dir::new("audit-sigkill");
    let path = dir.path().join("audit.jsonl");
    let log = open(&path);
    log.append(record(1)).unwrap();
    let mut c = child("begin-and-hang", &path, "RUN-KILLED").stdout(Stdio::piped()).spawn().unwrap();
    let out = std::io::BufReader::new(c.stdout.take().unwrap());
    let ready = out.lines().map_while(Result::ok).any(|l| l.contains("<child-ready>"));
    if !ready {
        let _ = c.kill();
        panic!("the child never started its run");
    }
    // While the owner lives, its run is not lost.
    assert_eq!(recover(&path), 0);
    assert!(journal_len(&path) > 0, "the run is in the journal");
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();

    assert_eq!(recover(&path), 1);
    let records = filter(&path, &Filter { outcome: Some("LOST".into()), ..Filter::default() }).unwrap().records;
    assert_eq!(records.len(), 1);
    let lost = &records[0];
    assert!(lost.lost);
    assert_eq!(lost.request_id, "RUN-KILLED");
    assert_eq!(lost.subject.handler.as_deref(), Some("forecast"));
    assert_eq!(lost.mode, "process");
    assert!(lost.error.as_deref().unwrap().contains("ended before recording the outcome"), "{:?}", lost.error);
    assert_eq!(records_in(&path), 2);
    assert_eq!(journal_len(&path), 0, "nothing is open any more");
    // Exactly once.
    assert_eq!(recover(&path), 0);
    assert_eq!(records_in(&path), 2);
}

#[test]
fn complete_appends_once_and_empties_the_journal() {
    let dir = Dir::new("audit-journal");
    let path = dir.path().join("audit.jsonl");
    let trail = AuditTrail::open_with(&path, &keys_for(&path)).unwrap();
    let a = trail.begin(&Subject::default(), "RUN-A", Some(Mode::Dev)).unwrap();
    let b = trail.begin(&Subject::default(), "RUN-B", Some(Mode::Dev)).unwrap();
    // Both open: the journal's last line lists them.
    let last = fs::read_to_string(crate::journal::path_of(&path)).unwrap().lines().last().unwrap().to_owned();
    assert!(last.contains("RUN-A") && last.contains("RUN-B"), "{last}");
    // A live owner's runs are not lost.
    assert_eq!(recover(&path), 0);
    let ended = |id: &str| failed_setup(id);
    a.complete(ended("a"), &[]).unwrap();
    assert!(journal_len(&path) > 0, "RUN-B is still open");
    b.complete(ended("b"), &[]).unwrap();
    assert_eq!(journal_len(&path), 0, "the last end empties the journal");
    assert_eq!(recover(&path), 0);
    assert_eq!(records_in(&path), 2);
}

#[test]
fn an_append_uses_the_end_read_ahead_only_while_the_log_is_unchanged() {
    let dir = Dir::new("audit-read-ahead");
    let path = dir.path().join("audit.jsonl");
    // Two writers of one log, as two cordon processes are.
    let (ours, theirs) = (open(&path), open(&path));
    // An empty log: the first record is line 1 and names the log's origin.
    ours.read_ahead();
    assert_eq!(ours.append(record(1)).unwrap().seq, 1);
    // Read ahead, and nothing written since: the append chains onto it.
    ours.read_ahead();
    assert_eq!(ours.append(record(2)).unwrap().seq, 2);
    // Read ahead, then the other writer appends: the append reads the end
    // again and chains onto the other's record.
    ours.read_ahead();
    theirs.append(record(3)).unwrap();
    assert_eq!(ours.append(record(4)).unwrap().seq, 4);
    let v = check(&path).unwrap();
    assert_eq!((v.records, v.latest.map(|(size, _)| size)), (4, Some(4)));
    // A new handle reads the origin ahead from the first line.
    let later = open(&path);
    later.read_ahead();
    assert_eq!(later.append(record(5)).unwrap().seq, 5);
    assert_eq!(check(&path).unwrap().records, 5);
}

#[test]
fn a_key_loaded_behind_still_refuses_a_run_it_cannot_sign_before_it_begins() {
    let dir = Dir::new("audit-key-behind");
    let path = dir.path().join("audit.jsonl");
    let keys = keys_for(&path);
    let behind = || AuditTrail::open_as(&path, AuditLog::open_loading_key_behind(&path, &keys));
    // No key yet: the loading thread leaves it to the first user (the
    // begin), which makes it; the run begins, and its record and latest
    // checkpoint are signed with it.
    let trail = behind().unwrap();
    trail.begin(&Subject::default(), "RUN-A", Some(Mode::Dev)).unwrap().complete(failed_setup("a"), &[]).unwrap();
    let v = check(&path).unwrap();
    assert_eq!((v.records, v.latest.map(|(size, _)| size)), (1, Some(1)));
    // The key file's id no longer matches its key (only deriving the key
    // tells): the key cannot be loaded.
    let key_file = dir.path().join("keys").join(checkpoint::KEY_FILE);
    let text = fs::read_to_string(&key_file).unwrap();
    let id = text.split('+').nth(3).unwrap().to_owned();
    let other: String = id.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    fs::write(&key_file, text.replace(&format!("+{id}+"), &format!("+{other}+"))).unwrap();
    let at_once = AuditTrail::open_with(&path, &keys).unwrap_err();
    assert!(at_once.render().contains("the key id does not match the key"), "{}", at_once.render());
    // Opened with the key loaded behind (by the thread, or by the begin if
    // the thread has not got to it), the open succeeds, but no run begins: the
    // error is the one opening with the key at once gives, and nothing is
    // written (no begin line in the journal, no record).
    let trail = behind().unwrap();
    let refused = trail.begin(&Subject::default(), "RUN-B", Some(Mode::Dev)).unwrap_err();
    assert!(matches!(refused, AuditError::Open { .. }), "{refused:?}");
    assert_eq!(refused.render(), at_once.render());
    assert_eq!(trail.key_ready().unwrap_err().render(), at_once.render(), "the same error, every time");
    assert_eq!(journal_len(&path), 0, "a refused run leaves no begin line");
    assert!(trail.log().append(record(2)).is_err(), "nothing is appended unsigned");
    assert_eq!(lines(&path).len(), 1);
}

/// A run begun by a process that has since been SIGKILLed, after it
/// appended the run's record or before (`recorded`).
fn dead_run(path: &Path, id: &str, recorded: bool) {
    let mode = if recorded { "begin-record-and-hang" } else { "begin-and-hang" };
    let mut c = child(mode, path, id).stdout(Stdio::piped()).spawn().unwrap();
    let out = std::io::BufReader::new(c.stdout.take().unwrap());
    let ready = out.lines().map_while(Result::ok).any(|l| l.contains("<child-ready>"));
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(ready, "the child never began its run");
}

#[test]
fn a_run_recorded_before_cordon_died_is_not_recorded_twice() {
    let dir = Dir::new("audit-twice");
    let path = dir.path().join("audit.jsonl");
    dead_run(&path, "REQ0005", true);
    assert_eq!(recover(&path), 0);
    assert_eq!(records_in(&path), 1);
    assert_eq!(journal_len(&path), 0);
    // Control: not recorded, it is recorded as lost.
    dead_run(&path, "REQ0006", false);
    assert_eq!(recover(&path), 1);
    assert_eq!(records_in(&path), 2);
}

#[test]
fn filter_by_plugin_outcome_and_time() {
    let dir = Dir::new("audit-filter");
    let log = open(&dir.path().join("audit.jsonl"));
    let times = [
        "2024-05-01T10:00:00.000Z",
        "2024-05-01T11:00:00.000Z",
        "2024-05-01T12:00:00.000Z",
        "2024-05-02T00:00:00.000Z",
    ];
    for (i, t) in times.iter().enumerate() {
        log.append(AuditRecord { time: t.to_string(), ..record(i + 1) }).unwrap();
    }
    let ids = |f: Filter| -> Vec<String> {
        filter(log.path(), &f).unwrap().records.into_iter().map(|r| r.request_id).collect()
    };
    assert_eq!(ids(Filter::default()).len(), 4);
    assert_eq!(ids(Filter { plugin: Some("@acme/even".into()), ..Filter::default() }), ["REQ0002", "REQ0004"]);
    assert_eq!(ids(Filter { outcome: Some("timeout".into()), ..Filter::default() }), ["REQ0003"]);
    assert_eq!(ids(Filter { outcome: Some("error".into()), ..Filter::default() }), ["REQ0003"]);
    assert_eq!(ids(Filter { outcome: Some("ok".into()), ..Filter::default() }), ["REQ0001", "REQ0002", "REQ0004"]);
    let at = |s: &str| parse_time(s, SystemTime::now()).unwrap();
    assert_eq!(
        ids(Filter { since: Some(at("2024-05-01T11:00:00Z")), until: Some(at("2024-05-02")), ..Filter::default() }),
        ["REQ0002", "REQ0003"]
    );
}

#[test]
fn filter_by_package_and_signer() {
    let dir = Dir::new("audit-filter-package");
    let log = open(&dir.path().join("audit.jsonl"));
    let v1 = format!("sha256:{}", "ab".repeat(32));
    let v2 = format!("sha256:{}", "cd".repeat(32));
    let provenance = [
        (Some(&v1), Some("1A2B3C4D5E6F7081")),
        (Some(&v2), Some("1A2B3C4D5E6F7081")),
        (Some(&v1), Some("FFFF000011112222")),
        (None, None),
    ];
    for (i, (hash, key)) in provenance.iter().enumerate() {
        let mut r = record(i + 1);
        r.subject.package_tree_hash = hash.cloned();
        r.subject.signer_key_id = key.map(str::to_owned);
        log.append(r).unwrap();
    }
    let ids = |f: Filter| -> Vec<String> {
        filter(log.path(), &f).unwrap().records.into_iter().map(|r| r.request_id).collect()
    };
    let package = |raw: &str| Filter { package: Some(package_prefix(raw).unwrap()), ..Filter::default() };
    assert_eq!(ids(package(&v1)), ["REQ0001", "REQ0003"]);
    assert_eq!(ids(package("ABABABAB")), ["REQ0001", "REQ0003"], "a prefix, any case, without sha256:");
    assert_eq!(ids(package("sha256:cdcdcdcdcd")), ["REQ0002"]);
    assert_eq!(ids(package("0123456789")), Vec::<String>::new(), "a hash no record has");
    assert_eq!(ids(Filter { signer: Some("1a2b3c4d5e6f7081".into()), ..Filter::default() }), ["REQ0001", "REQ0002"]);
    assert_eq!(
        ids(Filter {
            signer: Some("FFFF000011112222".into()),
            package: Some(package_prefix(&v1).unwrap()),
            ..Filter::default()
        }),
        ["REQ0003"]
    );
    for bad in ["abc", "sha256:", "sha256:xyz12345", "sha1:abababab", &format!("{v1}00")] {
        assert_eq!(package_prefix(bad), Err(HashError(bad.to_owned())), "{bad}");
    }
}

#[test]
fn times_on_the_command_line() {
    let now = humantime::parse_rfc3339("2024-05-02T12:00:00Z").unwrap();
    let show = |s: &str| humantime::format_rfc3339_seconds(parse_time(s, now).unwrap()).to_string();
    assert_eq!(show("2024-05-01T10:30:00Z"), "2024-05-01T10:30:00Z");
    assert_eq!(show("2024-05-01 10:30:00"), "2024-05-01T10:30:00Z");
    assert_eq!(show("2024-05-01"), "2024-05-01T00:00:00Z");
    assert_eq!(show("2h"), "2024-05-02T10:00:00Z");
    assert_eq!(show("1day 30m"), "2024-05-01T11:30:00Z");
    let e = parse_time("yesterday", now).unwrap_err();
    assert!(e.to_string().starts_with("invalid time `yesterday`; use an RFC 3339 UTC time"), "{e}");
}

#[test]
fn secrets_are_redacted_from_free_text() {
    let mut r = record(1);
    r.error = Some("auth failed with ghp_secret123".into());
    r.subject.command = Some(vec!["curl".into(), "-H".into(), "Authorization: ghp_secret123".into()]);
    r.subject.principal = Some("client ghp_secret123".into());
    r.network = Some(serde_json::json!({"denied": ["x.com?token=ghp_secret123"], "ghp_secret123": 1}));
    r.policy_digest = "ghp_secret123".into(); // generated fields stay as they are
    redact(&mut r, &["ghp_secret123".into(), String::new()]);
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(json.matches("ghp_secret123").count(), 1, "{json}");
    assert_eq!(r.error.as_deref(), Some("auth failed with ***"));
    assert_eq!(r.subject.command.unwrap()[2], "Authorization: ***");
    assert_eq!(r.subject.principal.as_deref(), Some("client ***"));
    assert_eq!(r.network.unwrap(), serde_json::json!({"denied": ["x.com?token=***"], "***": 1}));
}

#[test]
fn policy_digest_is_stable_and_tells_policies_apart() {
    let a = Policy::default();
    let mut b = Policy::default();
    b.limits.pids = Some(10);
    assert_eq!(policy_digest(&a), policy_digest(&Policy::default()));
    assert_ne!(policy_digest(&a), policy_digest(&b));
    assert_eq!(policy_digest(&a).len(), 64);
}

#[test]
fn record_times_are_rfc3339_utc() {
    let r = AuditRecord::new("R", "T", "dev");
    assert!(humantime::parse_rfc3339(&r.time).is_ok(), "{}", r.time);
    assert!(r.time.ends_with('Z'));
    assert_eq!(r.outcome, "ok");
}

#[test]
fn flag_beats_variable_beats_default() {
    let flag = Path::new("/a/flag.jsonl");
    let env = Some(OsString::from("/b/env.jsonl"));
    let default = Some(PathBuf::from("/c/default.jsonl"));
    assert_eq!(log_path_from(Some(flag), env.clone(), default.clone()).unwrap(), flag);
    assert_eq!(log_path_from(None, env, default.clone()).unwrap(), Path::new("/b/env.jsonl"));
    assert_eq!(log_path_from(None, Some(OsString::new()), default.clone()).unwrap(), Path::new("/c/default.jsonl"));
    assert!(matches!(log_path_from(None, None, None), Err(AuditError::NoLocation)));
}

fn failed_setup(message: &str) -> Ending {
    Ending {
        mode: Mode::Process,
        outcome: Outcome::Error(ErrorCode::SetupFailed),
        error: Some(message.into()),
        duration_ms: 4.5,
        cpu_ms: None,
        peak_rss_kb: None,
        network: None,
        policy_digest: "abc".into(),
    }
}

#[test]
fn a_record_carries_the_outcome_and_no_secret() {
    let subject = Subject {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        command: Some(vec!["cat".into(), "hunter22-token".into()]),
        ..Subject::default()
    };
    let r = AuditRecord::draft(&subject, "01JTEST", None)
        .finish(failed_setup("no such file: hunter22-token"), &["hunter22-token".into()]);
    assert_eq!(r.outcome, "SETUP_FAILED");
    assert_eq!(r.mode, "process");
    assert_eq!(r.duration_ms, 4.5);
    assert_eq!(r.cpu_ms, None, "a run that never started used no CPU of its own");
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("hunter22"), "{json}");
}

#[test]
fn an_unstarted_run_is_recorded_with_the_mode_asked_for() {
    let dir = Dir::new("audit-unstarted");
    let path = dir.path().join("audit.jsonl");
    let trail = AuditTrail::open_with(&path, &keys_for(&path)).unwrap();
    let r = trail.record_unstarted(&Subject::default(), "01JNOMODE", None, failed_setup("bad flag"), &[]).unwrap();
    assert_eq!(r.mode, "", "no mode was known");
    let r = trail.record_unstarted(&Subject::default(), "01JDEV", Some(Mode::Dev), failed_setup("x"), &[]).unwrap();
    assert_eq!(r.mode, "dev");
    assert_eq!(records_in(trail.log().path()), 2);
}

#[test]
fn fields_added_later_are_left_out_when_unset_and_old_lines_still_read() {
    // A line written before principal, token_jti, traceparent, package
    // provenance, worker and attempt existed.
    let old = r#"{"time":"2024-05-01T10:00:00.000Z","request_id":"R1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","tenant":null,"plugin":null,"plugin_version":null,"handler":null,"command":["true"],"mode":"dev","policy_digest":"d","outcome":"ok","error":null,"duration_ms":1.0,"cpu_ms":0.1,"peak_rss_kb":10,"network":null,"lost":false,"prev":"p"}"#;
    let r: AuditRecord = serde_json::from_str(old).unwrap();
    assert_eq!(r.subject.command.as_deref(), Some(&["true".to_string()][..]));
    assert_eq!(r.subject.principal, None);
    // Unset, the new fields are not written: the record reads as before.
    assert_eq!(serde_json::to_string(&r).unwrap(), old);
    // Set, they are.
    let mut set = r.clone();
    set.subject.principal = Some("ci".into());
    set.subject.token_jti = Some("01JJTI".into());
    set.subject.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    set.subject.package_tree_hash = Some("sha256:00".into());
    set.subject.signer_key_id = Some("ABCD".into());
    set.subject.signature_state = Some("signed".into());
    set.subject.worker = Some("w1".into());
    set.subject.attempt = Some(2);
    let json: serde_json::Value = serde_json::to_value(&set).unwrap();
    for field in
        ["principal", "token_jti", "traceparent", "package_tree_hash", "signer_key_id", "signature_state", "worker"]
    {
        assert!(json[field].is_string(), "{field} missing: {json}");
    }
    assert_eq!(json["attempt"], 2);
    assert_eq!(serde_json::from_value::<AuditRecord>(json).unwrap(), set);
}

#[test]
fn outcomes_parse_case_insensitively_and_spell_like_error_codes() {
    assert_eq!("timeout".parse::<Outcome>().unwrap(), Outcome::Error(ErrorCode::Timeout));
    assert_eq!("LOST".parse::<Outcome>().unwrap(), Outcome::Error(ErrorCode::Lost));
    assert_eq!("refresh_reuse".parse::<Outcome>().unwrap(), Outcome::Error(ErrorCode::RefreshReuse));
    assert_eq!("ok".parse::<Outcome>().unwrap(), Outcome::Ok);
    assert_eq!("Cancelled".parse::<Outcome>().unwrap().as_str(), "CANCELLED");
    assert_eq!("nope".parse::<Outcome>().unwrap_err().to_string(), "unknown outcome `nope`");
    for code in ErrorCode::ALL {
        // Serialised (results) and spelled (records) the same way.
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str(), "{code:?}");
        assert_eq!(serde_json::from_value::<ErrorCode>(code.as_str().into()).unwrap(), code);
        assert_eq!(code.as_str().parse::<Outcome>().unwrap(), Outcome::Error(code));
    }
}

/// Re-chains `lines` as someone who can write the log but has no key
/// would: every `prev` and `seq` made right again; with
/// [`Checkpoints::Strip`], the signed checkpoints dropped too.
fn rechain(lines: &[String], checkpoints: Checkpoints) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for (i, l) in lines.iter().enumerate() {
        let mut r: AuditRecord = serde_json::from_str(l).unwrap();
        r.prev = sha256_hex(out.last().map_or(&b""[..], |p: &String| p.as_bytes()));
        r.seq = Some(i as u64 + 1);
        if checkpoints == Checkpoints::Strip {
            r.checkpoint = None;
        }
        out.push(serde_json::to_string(&r).unwrap());
    }
    out
}

#[derive(PartialEq)]
enum Checkpoints {
    Keep,
    Strip,
}

#[test]
fn records_carry_checkpoints_and_the_latest_is_kept_outside_the_log() {
    let dir = Dir::new("audit-cp");
    let log = log_with(&dir, 205);
    let v = check(log.path()).unwrap();
    assert_eq!((v.records, v.checkpoints), (205, 2), "{v:?}");
    let l = lines(log.path());
    for (i, line) in l.iter().enumerate() {
        let r: AuditRecord = serde_json::from_str(line).unwrap();
        assert_eq!(r.seq, Some(i as u64 + 1));
        assert_eq!(r.checkpoint.is_some(), i == 100 || i == 200, "line {}", i + 1);
    }
    // The checkpoint on line 101 is a C2SP signed note of the first 100 lines.
    let r: AuditRecord = serde_json::from_str(&l[100]).unwrap();
    let note = r.checkpoint.unwrap();
    let mut body = note.lines();
    assert_eq!(body.next(), Some(Checkpoint::origin_of(l[0].as_bytes()).as_str()));
    assert_eq!(body.next(), Some("100"));
    let (latest, key) = v.latest.unwrap();
    assert_eq!(latest, 205);
    assert!(key.starts_with("cordon-audit"), "{key}");
}

#[test]
fn deleting_a_middle_record_and_rechaining_is_detected() {
    let dir = Dir::new("audit-rechain");
    let log = log_with(&dir, 150);
    let mut l = lines(log.path());
    l.remove(49);
    // The chain alone is fooled; the checkpoint on (now) line 100 is not.
    write_lines(log.path(), &rechain(&l, Checkpoints::Keep));
    let e = check(log.path()).unwrap_err();
    assert!(matches!(e, VerifyError::Rechained { line: 100, .. }), "{e}");
    // Without the checkpoints in the log, the latest one kept outside it
    // still covers all 150 lines.
    write_lines(log.path(), &rechain(&l, Checkpoints::Strip));
    let e = check(log.path()).unwrap_err();
    assert!(matches!(e, VerifyError::Truncated { size: 150, lines: 149, .. }), "{e}");
    // Control: the chain alone says intact.
    assert_eq!(verify(log.path(), &Trust::default()).unwrap().records, 149);
}

#[test]
fn truncating_the_tail_is_detected() {
    let dir = Dir::new("audit-trunc");
    let log = log_with(&dir, 10);
    let mut l = lines(log.path());
    l.truncate(7);
    write_lines(log.path(), &l);
    let e = check(log.path()).unwrap_err();
    assert!(matches!(e, VerifyError::Truncated { size: 10, lines: 7, .. }), "{e}");
    assert!(e.to_string().contains("truncated: the latest checkpoint"), "{e}");
    // Control: without the latest checkpoint the shorter log looks intact.
    let keys_only = Trust { anchor: None, ..Trust::for_log(log.path(), &keys_for(log.path())) };
    assert_eq!(verify(log.path(), &keys_only).unwrap().records, 7);
}

#[test]
fn a_checkpoint_signed_by_another_key_is_detected() {
    let dir = Dir::new("audit-forged");
    let log = log_with(&dir, 10);
    let trust = Trust::for_log(log.path(), &keys_for(log.path()));
    let mut l = lines(log.path());
    l.truncate(7);
    write_lines(log.path(), &l);
    // The forger replaces the latest checkpoint by one of their own key
    // that matches the shortened log.
    let forger = AuditKey::load_or_create(&dir.join("forger"), || "cordon-audit".into()).unwrap();
    let cp = Checkpoint {
        origin: Checkpoint::origin_of(l[0].as_bytes()),
        size: 7,
        hash: sha2::Sha256::digest(l[6].as_bytes()).into(),
    };
    fs::write(trust.anchor.as_ref().unwrap(), forger.sign(&cp)).unwrap();
    let e = check(log.path()).unwrap_err();
    assert!(matches!(e, VerifyError::BadCheckpoint { reason: NoteError::UnknownKey(_), .. }), "{e}");
    // Control: with the forger's key trusted, the forgery would pass.
    let fooled = Trust { verifiers: vec![forger.verifier().clone()], ..trust.clone() };
    assert_eq!(verify(log.path(), &fooled).unwrap().latest.unwrap().0, 7);
    // An in-log checkpoint replaced the same way is caught too.
    let dir2 = Dir::new("audit-forged-inlog");
    let log2 = log_with(&dir2, 101);
    let mut l = lines(log2.path());
    let mut r: AuditRecord = serde_json::from_str(&l[100]).unwrap();
    let mut cp = Checkpoint::parse(r.checkpoint.as_deref().unwrap().split("\n\n").next().unwrap()).unwrap();
    cp.size = 100;
    r.checkpoint = Some(forger.sign(&cp));
    l[100] = serde_json::to_string(&r).unwrap();
    write_lines(log2.path(), &l);
    let e = check(log2.path()).unwrap_err();
    assert!(matches!(e, VerifyError::BadCheckpoint { line: Some(101), .. }), "{e}");
}

#[test]
fn checkpoints_of_a_rotated_key_still_verify_and_a_missing_key_is_no_pass() {
    let dir = Dir::new("audit-rotate");
    let path = dir.path().join("audit.jsonl");
    let log = open(&path);
    for i in 1..=120 {
        log.append(record(i)).unwrap();
    }
    let KeyFolder::At(keys) = keys_for(&path) else { unreachable!() };
    fs::rename(keys.join("audit.key"), keys.join("retired.key")).unwrap();
    let log = open(&path);
    for i in 121..=205 {
        log.append(record(i)).unwrap();
    }
    let v = check(&path).unwrap();
    assert_eq!((v.records, v.checkpoints), (205, 2));
    // No verifier key at all: the checkpoints cannot be checked, which is
    // not a pass.
    let e = verify(&path, &Trust { verifiers: vec![], ..Trust::for_log(&path, &keys_for(&path)) }).unwrap_err();
    assert!(matches!(e, VerifyError::NoKey { .. }), "{e}");
    assert!(e.to_string().contains("cannot check the checkpoint on line 101: no verifier key"), "{e}");
}

#[test]
fn runs_of_processes_killed_at_any_point_end_with_exactly_one_record_each() {
    use std::collections::HashMap;
    let dir = Dir::new("audit-kill-any");
    let path = dir.path().join("audit.jsonl");
    open(&path);
    // Six writers at once; writer k is SIGKILLed right after it says it
    // began run 3k+1 (so somewhere between that begin and a later point),
    // the last one runs to the end.
    let mut began: Vec<String> = vec![];
    let mut done: Vec<String> = vec![];
    let children: Vec<_> =
        (0..6).map(|k| (k, child("runs", &path, &format!("W{k}")).stdout(Stdio::piped()).spawn().unwrap())).collect();
    for (k, mut c) in children {
        let out = std::io::BufReader::new(c.stdout.take().unwrap());
        let kill_after = (k < 5).then(|| format!("W{k}-{}", 3 * k + 1));
        for line in out.lines().map_while(Result::ok) {
            if let Some(id) = line.split("<began ").nth(1).map(|r| r.trim_end_matches('>').to_owned()) {
                began.push(id.clone());
                if kill_after.as_deref() == Some(id.as_str()) {
                    c.kill().unwrap();
                }
            }
            if let Some(id) = line.split("<done ").nth(1) {
                done.push(id.trim_end_matches('>').to_owned());
            }
        }
        c.wait().unwrap();
    }
    recover(&path);
    let v = check(&path).unwrap();
    let records = filter(&path, &Filter::default()).unwrap().records;
    assert_eq!(v.records, records.len());
    let mut count: HashMap<&str, usize> = HashMap::new();
    for r in &records {
        *count.entry(r.request_id.as_str()).or_default() += 1;
    }
    assert!(count.values().all(|n| *n == 1), "a run recorded twice: {count:?}");
    for id in &began {
        assert_eq!(count.get(id.as_str()), Some(&1), "run {id} began and has no record");
    }
    for id in &done {
        let r = records.iter().find(|r| &r.request_id == id).unwrap();
        assert_eq!(r.outcome, "ok", "{id} completed and was still recorded as {}", r.outcome);
    }
    // A killed writer leaves at most its one run in flight, recorded LOST.
    let lost: Vec<&str> = records.iter().filter(|r| r.lost).map(|r| r.request_id.as_str()).collect();
    assert!(lost.len() <= 5, "{lost:?}");
    assert!(lost.iter().all(|id| !done.iter().any(|d| d == id)), "a completed run recorded as LOST: {lost:?}");
    assert_eq!(records.iter().filter(|r| r.request_id.starts_with("W5-")).count(), 40);
    assert_eq!(journal_len(&path), 0, "every writer is gone, so nothing is open");
}

fn ok_ending() -> Ending {
    Ending { outcome: Outcome::Ok, error: None, ..failed_setup("") }
}

fn ids_once(path: &Path) -> std::collections::HashMap<String, AuditRecord> {
    let mut out = std::collections::HashMap::new();
    for r in filter(path, &Filter::default()).unwrap().records {
        let id = r.request_id.clone();
        assert!(out.insert(id.clone(), r).is_none(), "{id} recorded twice");
    }
    out
}

#[test]
fn group_commit_records_every_run_once_with_many_records_per_sync() {
    let dir = Dir::new("audit-group");
    let path = dir.path().join("audit.jsonl");
    let opts = GroupOptions { linger: Duration::from_millis(20), ..GroupOptions::default() };
    let w = GroupWriter::open(&path, &keys_for(&path), opts).unwrap();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let w = &w;
            scope.spawn(move || {
                for i in 0..25 {
                    let run = w.begin(&Subject::default(), &format!("T{t}-{i}"), Some(Mode::Dev)).wait().unwrap();
                    let r = run.complete(ok_ending(), &[]).wait().unwrap();
                    assert_eq!(r.request_id, format!("T{t}-{i}"));
                    assert!(r.seq.is_some());
                }
            });
        }
    });
    let stats = w.shutdown().unwrap();
    assert_eq!((stats.begins, stats.records), (200, 200));
    assert!(stats.log_syncs < stats.records, "no record shared a sync: {stats:?}");
    assert!(stats.journal_syncs < stats.begins, "no begin shared a sync: {stats:?}");
    let v = check(&path).unwrap();
    assert_eq!((v.records, v.latest.map(|l| l.0)), (200, Some(200)));
    assert_eq!(ids_once(&path).len(), 200);
    assert_eq!(journal_len(&path), 0);
}

#[test]
fn a_service_owns_its_log_while_it_runs() {
    let dir = Dir::new("audit-owned");
    let path = dir.path().join("audit.jsonl");
    let w = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap();
    let e = AuditTrail::open_with(&path, &keys_for(&path)).unwrap_err();
    assert!(matches!(e, AuditError::Owned { .. }), "{e}");
    assert!(e.to_string().contains("is written by a running service"), "{e}");
    let e = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap_err();
    assert!(matches!(e, AuditError::Owned { .. }), "{e}");
    // Control: once it is shut down the log is anyone's again, while the
    // writer itself still lives (a service's handlers may hold it longer).
    w.shutdown().unwrap();
    AuditTrail::open_with(&path, &keys_for(&path)).unwrap();
    GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap().shutdown().unwrap();
    drop(w);
}

#[test]
fn a_service_waits_for_no_cli_run_and_records_the_dead_ones() {
    let dir = Dir::new("audit-busy");
    let path = dir.path().join("audit.jsonl");
    open(&path);
    let mut c = child("begin-and-hang", &path, "CLI-RUN").stdout(Stdio::piped()).spawn().unwrap();
    let out = std::io::BufReader::new(c.stdout.take().unwrap());
    assert!(out.lines().map_while(Result::ok).any(|l| l.contains("<child-ready>")));
    let e = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap_err();
    assert!(matches!(e, AuditError::Busy { .. }), "{e}");
    c.kill().unwrap();
    c.wait().unwrap();
    let w = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap();
    assert_eq!(w.recovered(), 1);
    w.shutdown().unwrap();
    assert_eq!(ids_once(&path)["CLI-RUN"].outcome, "LOST");
}

#[test]
fn a_killed_service_leaves_every_accepted_run_with_exactly_one_record() {
    let dir = Dir::new("audit-group-kill");
    let path = dir.path().join("audit.jsonl");
    open(&path);
    let mut c = child("group", &path, "").stdout(Stdio::piped()).spawn().unwrap();
    let out = std::io::BufReader::new(c.stdout.take().unwrap());
    let (mut accepted, mut durable) = (vec![], vec![]);
    for line in out.lines().map_while(Result::ok) {
        if let Some(id) = line.split("<accepted ").nth(1) {
            accepted.push(id.trim_end_matches('>').to_owned());
        }
        if let Some(id) = line.split("<durable ").nth(1) {
            durable.push(id.trim_end_matches('>').to_owned());
            if durable.len() == 60 {
                c.kill().unwrap(); // SIGKILL, mid-commit or between
            }
        }
    }
    c.wait().unwrap();
    let w = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap();
    let recovered = w.recovered();
    w.shutdown().unwrap();
    check(&path).unwrap();
    let records = ids_once(&path);
    for id in &accepted {
        assert!(records.contains_key(id), "{id} was accepted and has no record");
    }
    for id in &durable {
        assert_eq!(records[id].outcome, "ok", "{id} was durable and is recorded as {}", records[id].outcome);
    }
    // Four request threads: at most four runs were in flight.
    let lost = records.values().filter(|r| r.lost).count();
    assert_eq!(lost, recovered);
    assert!(lost <= 4, "{lost} LOST");
    assert_eq!(journal_len(&path), 0);
}

/// Two runs with one request id (two tenants' runs sharing an idempotency
/// key) begin, the first completes, and the process that ran them is
/// killed: the second has its `LOST` record, once. The first's end must
/// end the first's begin, not every run with its id, and its record must
/// not pass for the second's.
fn same_id_runs_of_a_killed_process(mode: &str, recover_with: impl Fn(&Path) -> usize) {
    let dir = Dir::new("audit-same-id");
    let path = dir.path().join("audit.jsonl");
    open(&path);
    let mut c = child(mode, &path, "SHARED-KEY").stdout(Stdio::piped()).spawn().unwrap();
    let out = std::io::BufReader::new(c.stdout.take().unwrap());
    let ready = out.lines().map_while(Result::ok).any(|l| l.contains("<child-ready>"));
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();
    assert!(ready, "the child never began its runs");
    assert!(journal_len(&path) > 0, "tenant b's run is still in the journal");
    assert_eq!(recover_with(&path), 1, "tenant b's run is recorded as LOST");
    let records: Vec<AuditRecord> = filter(&path, &Filter::default()).unwrap().records;
    let of = |t: &str| records.iter().filter(|r| r.subject.tenant.as_deref() == Some(t)).collect::<Vec<_>>();
    let (a, b) = (of("a"), of("b"));
    assert_eq!((a.len(), b.len()), (1, 1), "one record each: {records:?}");
    assert_eq!((a[0].outcome.as_str(), b[0].outcome.as_str()), ("ok", "LOST"));
    assert_eq!(b[0].request_id, "SHARED-KEY");
    assert_eq!(journal_len(&path), 0, "nothing is open any more");
    assert_eq!(recover_with(&path), 0, "exactly once");
}

#[test]
fn a_run_sharing_its_request_id_with_an_ended_one_is_recovered() {
    same_id_runs_of_a_killed_process("same-id", recover);
}

#[test]
fn a_group_run_sharing_its_request_id_with_an_ended_one_is_recovered() {
    same_id_runs_of_a_killed_process("group-same-id", |path| {
        let w = GroupWriter::open(path, &keys_for(path), GroupOptions::default()).unwrap();
        let n = w.recovered();
        w.shutdown().unwrap();
        n
    });
}

#[test]
fn replay_ends_the_run_an_end_numbers_and_old_ends_by_id() {
    use crate::journal::{replay, Line};
    let dir = Dir::new("audit-replay");
    let file = dir.path().join("j");
    let draft =
        |t: &str, id: &str| AuditRecord::draft(&Subject { tenant: Some(t.into()), ..Subject::default() }, id, None);
    let line = |begin: Option<AuditRecord>, end: Option<&str>, n: Option<u64>| {
        let l = Line { begin, end: end.map(str::to_owned), pid: Some(7), log_len: Some(0), open: None, n };
        serde_json::to_string(&l).unwrap() + "\n"
    };
    let replayed = |text: String| {
        fs::write(&file, &text).unwrap();
        replay(&fs::File::open(&file).unwrap(), text.len() as u64, None, &mut crate::journal::Rejected::default())
            .unwrap()
    };
    let (a, b) = (draft("a", "K"), draft("b", "K"));
    // Two begins with one id, one end: the other stays open.
    let open = replayed(
        line(Some(a.clone()), None, Some(0)) + &line(Some(b.clone()), None, Some(1)) + &line(None, Some("K"), Some(0)),
    );
    assert_eq!(open.iter().map(|o| (o.id.as_str(), o.n)).collect::<Vec<_>>(), [("K", Some(1))]);
    // The same, ending the second.
    let open = replayed(
        line(Some(a.clone()), None, Some(0)) + &line(Some(b.clone()), None, Some(1)) + &line(None, Some("K"), Some(1)),
    );
    assert_eq!(open.iter().map(|o| o.n).collect::<Vec<_>>(), [Some(0)]);
    // A journal from before the numbers replays as it did: an end drops
    // every run with its id.
    let old = line(Some(a), None, None) + &line(Some(b), None, None) + &line(Some(draft("c", "OTHER")), None, None);
    let open = replayed(old + &line(None, Some("K"), None));
    assert_eq!(open.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["OTHER"]);
    assert!(!line(None, Some("K"), None).contains("\"n\""), "an old-style line has no number");
}

#[test]
fn runs_open_in_a_compacted_journal_are_recovered() {
    let dir = Dir::new("audit-compact");
    let path = dir.path().join("audit.jsonl");
    open(&path);
    let mut c = child("group-compact", &path, "").stdout(Stdio::piped()).spawn().unwrap();
    let out = std::io::BufReader::new(c.stdout.take().unwrap());
    assert!(out.lines().map_while(Result::ok).any(|l| l.contains("<child-ready>")));
    let journal = fs::read_to_string(crate::journal::path_of(&path)).unwrap();
    assert_eq!(journal.lines().count(), 3, "compacted to the three open runs:\n{journal}");
    c.kill().unwrap();
    c.wait().unwrap();
    let w = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap();
    assert_eq!(w.recovered(), 3);
    w.shutdown().unwrap();
    let records = ids_once(&path);
    assert_eq!(records.len(), 6);
    assert_eq!(records.values().filter(|r| r.lost).count(), 3);
}

#[test]
fn shutdown_records_runs_never_completed_and_keeps_a_time_based_checkpoint() {
    let dir = Dir::new("audit-shutdown");
    let path = dir.path().join("audit.jsonl");
    let opts = GroupOptions { checkpoint_interval: Duration::ZERO, ..GroupOptions::default() };
    let w = GroupWriter::open(&path, &keys_for(&path), opts).unwrap();
    let a = w.begin(&Subject::default(), "DONE", Some(Mode::Dev)).wait().unwrap();
    let b = w.begin(&Subject::default(), "NEVER", Some(Mode::Dev)).wait().unwrap();
    a.complete(ok_ending(), &[]).wait().unwrap();
    w.record_unstarted(&Subject::default(), "REFUSED", None, failed_setup("bad input"), &[]).wait().unwrap();
    drop(b);
    let stats = w.shutdown().unwrap();
    assert_eq!(stats.records, 3);
    let records = ids_once(&path);
    assert_eq!(records["NEVER"].outcome, "LOST");
    assert!(records["NEVER"].error.as_deref().unwrap().contains("service shut down"));
    assert_eq!(records["REFUSED"].outcome, "SETUP_FAILED");
    // Every commit's first record after the first line carries a checkpoint.
    let v = check(&path).unwrap();
    assert!(v.checkpoints >= 2, "{v:?}");
    assert_eq!(v.latest.unwrap().0, 3);
    assert_eq!(journal_len(&path), 0);
}

#[test]
fn commits_are_futures_for_async_callers() {
    let dir = Dir::new("audit-async");
    let path = dir.path().join("audit.jsonl");
    let w = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let record = rt.block_on(async {
        let run = w.begin(&Subject::default(), "ASYNC", Some(Mode::Dev)).await.unwrap();
        run.complete(ok_ending(), &[]).await.unwrap()
    });
    assert_eq!((record.request_id.as_str(), record.seq), ("ASYNC", Some(1)));
    w.shutdown().unwrap();
    // A writer that is gone answers with an error, not a hang.
    let w = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap();
    let run = w.begin(&Subject::default(), "LATE", Some(Mode::Dev)).wait().unwrap();
    w.shutdown().unwrap();
    let e = run.complete(ok_ending(), &[]).wait().unwrap_err();
    assert!(matches!(e, AuditError::WriterGone { .. }), "{e}");
}

#[test]
fn a_writer_dropped_on_an_async_runtime_stops_without_blocking_it() {
    let dir = Dir::new("audit-async-drop");
    let path = dir.path().join("audit.jsonl");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let w = GroupWriter::open(&path, &keys_for(&path), GroupOptions::default()).unwrap();
        let run = w.begin(&Subject::default(), "DONE", Some(Mode::Dev)).await.unwrap();
        run.complete(ok_ending(), &[]).await.unwrap();
        // A blocking wait here would panic (it is the runtime's thread).
        drop(w);
    });
    // The writer thread finishes on its own and lets go of the log.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let trail = loop {
        match AuditTrail::open_with(&path, &keys_for(&path)) {
            Ok(t) => break t,
            Err(AuditError::Owned { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(trail.recovered(), 0);
    assert_eq!(ids_once(&path)["DONE"].outcome, "ok");
    assert_eq!(journal_len(&path), 0);
}

/// A key load reads the public half kept beside the key instead of
/// deriving it (a scalar multiplication, most of a load), but only when its
/// tag binds it to this seed: a public half written by anyone else (who
/// could then have cordon sign one message under two public keys, which
/// gives the secret away) is ignored, derived again, and replaced.
#[test]
fn a_kept_public_half_is_used_only_when_its_tag_binds_it_to_the_seed() {
    let dir = Dir::new("audit-key-bound");
    let keys = dir.join("keys");
    let made = AuditKey::load_or_create(&keys, || "cordon-audit".into()).unwrap();
    let id = made.verifier().label().rsplit_once('+').unwrap().1.to_owned();
    // The 32 bytes of a verifier's public key, in base64 (its vkey form
    // carries them after an algorithm byte).
    let public_b64 = |v: &Verifier| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        b64.encode(&b64.decode(v.to_vkey().splitn(3, '+').nth(2).unwrap()).unwrap()[1..])
    };
    let bound = keys.join(checkpoint::PUBLIC_KEYS_DIR).join(format!("{id}.{}", checkpoint::BOUND_EXT));
    let kept = fs::read_to_string(&bound).expect("a new key keeps its public half");
    let cp = Checkpoint { origin: "cordon.audit/0123456789abcdef".into(), size: 1, hash: [7; 32] };
    let signs_for_real = |key: &AuditKey| checkpoint::open(&key.sign(&cp), &[made.verifier().clone()]).is_ok();
    let loaded = AuditKey::load(&keys.join(checkpoint::KEY_FILE)).unwrap();
    assert_eq!(loaded.verifier().to_vkey(), made.verifier().to_vkey());
    assert!(signs_for_real(&loaded));

    // Another public half (a real key's, so it parses) with a tag of the
    // right length but not this seed's.
    let other = AuditKey::load_or_create(&dir.join("other"), || "cordon-audit".into()).unwrap();
    let (_, tag) = kept.trim().split_once(' ').unwrap();
    let forged = format!("{} {}\n", public_b64(other.verifier()), "0".repeat(tag.len()));
    fs::write(&bound, &forged).unwrap();
    let loaded = AuditKey::load(&keys.join(checkpoint::KEY_FILE)).unwrap();
    assert_eq!(loaded.verifier().to_vkey(), made.verifier().to_vkey(), "a public half with a foreign tag was used");
    assert!(signs_for_real(&loaded));
    assert_eq!(fs::read_to_string(&bound).unwrap(), kept, "the forged file was not replaced by the real one");

    // The forged public half with the real tag (the tag is over the
    // public half: it does not carry over).
    fs::write(&bound, format!("{} {tag}\n", public_b64(other.verifier()))).unwrap();
    let loaded = AuditKey::load(&keys.join(checkpoint::KEY_FILE)).unwrap();
    assert_eq!(loaded.verifier().to_vkey(), made.verifier().to_vkey(), "the tag did not cover the public half");

    // A missing or damaged file: derived and kept again.
    fs::remove_file(&bound).unwrap();
    assert!(signs_for_real(&AuditKey::load(&keys.join(checkpoint::KEY_FILE)).unwrap()));
    assert_eq!(fs::read_to_string(&bound).unwrap(), kept);
    fs::write(&bound, "not a key\n").unwrap();
    assert!(signs_for_real(&AuditKey::load(&keys.join(checkpoint::KEY_FILE)).unwrap()));
    assert_eq!(fs::read_to_string(&bound).unwrap(), kept);
}

/// A run begun on the log at `path` (keys in `keys`) whose owner is gone:
/// its trail dropped without completing it, so its begin line stays in the
/// journal with no lock on it.
fn abandoned_run(path: &Path, keys: &KeyFolder, id: &str, tenant: &str) {
    let trail = AuditTrail::open_with(path, keys).unwrap();
    let subject = Subject { tenant: Some(tenant.into()), plugin: Some("@acme/payments".into()), ..Subject::default() };
    let run = trail.begin(&subject, id, Some(Mode::Process)).unwrap();
    drop(run);
    drop(trail);
}

fn outcomes(path: &Path) -> Vec<(String, String)> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap())
        .map(|r| (r.request_id, r.outcome))
        .collect()
}

#[test]
fn journal_lines_without_a_valid_mac_are_one_forged_record_never_the_runs_they_name() {
    let dir = Dir::new("audit-journal-mac");
    let keys = KeyFolder::At(dir.path().join("keys"));
    let path = dir.path().join("a/audit.jsonl");
    let other = dir.path().join("b/audit.jsonl");
    AuditLog::open_with(&path, &keys).unwrap().append(record(1)).unwrap();
    // A genuine line, sealed with the same key, of another log's run.
    abandoned_run(&other, &keys, "RUN-OTHER", "bank-a");
    let genuine = fs::read_to_string(crate::journal::path_of(&other)).unwrap();
    assert!(genuine.contains("\"mac\":\""), "{genuine}");
    let len = fs::metadata(&path).unwrap().len();
    // Three lines a process that can write the folder could leave: the
    // other log's line as it is, the same with its tenant changed, and the
    // reviewer's line with no MAC at all (audit-journal-forge.sh).
    let edited = genuine.replace("bank-a", "bank-b").replace("RUN-OTHER", "RUN-EDITED");
    let unsealed = format!(
        "{{\"begin\":{{\"time\":\"2026-12-01T03:00:00.000Z\",\"request_id\":\"RUN-FORGED\",\"trace_id\":\"\",\"tenant\":\"bank-b\",\"plugin\":null,\"plugin_version\":null,\"handler\":null,\"command\":[\"/usr/bin/transfer\"],\"mode\":\"container\",\"policy_digest\":\"\",\"outcome\":\"ok\",\"error\":null,\"duration_ms\":0.0,\"cpu_ms\":null,\"peak_rss_kb\":null,\"network\":null,\"lost\":false,\"prev\":\"\"}},\"open\":[{{\"id\":\"RUN-FORGED\",\"pid\":999999,\"at\":0,\"log_len\":{len}}}]}}\n"
    );
    fs::write(crate::journal::path_of(&path), format!("{genuine}{edited}{unsealed}")).unwrap();

    let trail = AuditTrail::open_with(&path, &keys).unwrap();
    assert_eq!((trail.recovered(), trail.rejected()), (0, 3));
    drop(trail);
    let seen = outcomes(&path);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1].0.starts_with("journal-") && seen[1].1 == "JOURNAL_FORGED", "{seen:?}");
    let forged = serde_json::from_str::<AuditRecord>(&lines(&path)[1]).unwrap();
    assert_eq!((forged.subject.tenant, forged.subject.command, forged.lost), (None, None, false));
    let why = forged.error.unwrap();
    assert!(why.contains("3 line(s)") && why.contains("no valid MAC") && why.contains("RUN-FORGED"), "{why}");
    assert_eq!(journal_len(&path), 0, "the rejected lines are gone");
    check(&path).unwrap();
    // Reported once.
    let again = AuditTrail::open_with(&path, &keys).unwrap();
    assert_eq!((again.recovered(), again.rejected()), (0, 0));
    assert_eq!(outcomes(&path).len(), 2);
    // The genuine line is its own log's LOST run.
    let theirs = AuditTrail::open_with(&other, &keys).unwrap();
    assert_eq!((theirs.recovered(), theirs.rejected()), (1, 0));
    assert_eq!(outcomes(&other), vec![("RUN-OTHER".to_owned(), "LOST".to_owned())]);
}

#[test]
fn a_forged_journal_line_neither_ends_a_live_run_nor_opens_one() {
    let dir = Dir::new("audit-journal-mac-live");
    let path = dir.path().join("audit.jsonl");
    let keys = keys_for(&path);
    let trail = AuditTrail::open_with(&path, &keys).unwrap();
    let live = trail.begin(&Subject::default(), "RUN-LIVE", Some(Mode::Dev)).unwrap();
    // After the live run's line: one saying nothing is open, with no MAC.
    let mut j = fs::OpenOptions::new().append(true).open(crate::journal::path_of(&path)).unwrap();
    j.write_all(b"{\"end\":\"RUN-LIVE\",\"open\":[{\"id\":\"RUN-GHOST\",\"pid\":1,\"at\":0,\"log_len\":0}]}\n")
        .unwrap();
    drop(j);
    let other = AuditTrail::open_with(&path, &keys).unwrap();
    assert_eq!((other.recovered(), other.rejected()), (0, 1), "the live run is not lost, the ghost not opened");
    drop(other);
    // Its owner dies: the run the forged line said had ended is LOST.
    drop(live);
    drop(trail);
    let after = AuditTrail::open_with(&path, &keys).unwrap();
    assert_eq!((after.recovered(), after.rejected()), (1, 0));
    let seen = outcomes(&path);
    assert_eq!(seen.iter().map(|(_, o)| o.as_str()).collect::<Vec<_>>(), ["JOURNAL_FORGED", "LOST"], "{seen:?}");
    assert_eq!(seen[1].0, "RUN-LIVE");
    assert_eq!(journal_len(&path), 0);
}
