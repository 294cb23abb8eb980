//! The warm pool (`[server] pool_size`): plugin runs set up ahead of
//! demand, so that an execution's latency does not include building its
//! sandbox.
//!
//! One pool thread (`cordon-pool`) keeps, per [`Key`] (plugin id, folder,
//! verified tree hash, handler, mode, and the tenant when its runs get the
//! tenant's data folder) that an execution used within
//! `pool_ttl_ms`, up to `pool_size` handler runs parked
//! ([`cordon::plugin::park_handler`]): manifest checked, policy built, run
//! folder made, namespaces, mounts and cgroups ready, init waiting for its
//! go message. A worker that takes one starts it with the execution's
//! input, traceparent, request id and cancel handle
//! ([`cordon::plugin::ParkedHandler::start`]); without one it builds a fresh sandbox as
//! before, and the pool thread parks the next.
//!
//! The refill of a key whose parked run an execution took begins once that
//! execution's command has been exec'd ([`Refill::release`]; if it never
//! is, once the execution is answered and the [`Refill`] dropped), not at
//! the take: on a small machine a refill (plan, Landlock, seccomp, the
//! spawner's clone, the new init's mounts: a CPU for a few ms) started at
//! the take runs exactly while the parked init it follows wakes, forks and
//! execs the command, and delays that start. An execution that finds none
//! parked meanwhile has the refill begin at once (below).
//!
//! An execution that finds none parked while the pool thread is refilling
//! its key (the execution before it took the last one) waits up to
//! [`REFILL_WAIT`] for that refill rather than building a sandbox of its
//! own: the refill started earlier, so it is ready sooner than a fresh
//! build would be, and the two do not compete for the CPU and the
//! spawner. One execution per key waits at a time (the refill brings one
//! sandbox); the others, and any after a failed park, build fresh.
//!
//! # Guarantees
//!
//! - **One execution per sandbox.** Starting a parked run consumes it; a
//!   parked sandbox is never reused, and every execution gets its own
//!   namespaces, mounts, `/tmp` and run folder.
//! - **Never a weaker tier than a fresh sandbox.** A parked run is built
//!   from the same request the worker builds for a fresh run of that key
//!   (policy from the manifest and the host, mode, environment, the
//!   service's audit files carved out); only the execution's own data
//!   differs. The execution's plugin is verified by the catalog at
//!   acceptance, as always, and a parked run is used only for an execution
//!   whose verified tree hash and folder are those of its key. A key's
//!   runs are parked from its plan ([`crate::plans`]), made from the
//!   manifest bytes that hash to what the catalog verified, so a manifest
//!   changed on disk after a verification never reaches a parked run. The
//!   pool thread asks the catalog every [`CHECK_INTERVAL`]: parked runs of
//!   a plugin that was re-installed (another tree hash) or disabled are
//!   killed and reaped then, and an execution of the new version drops
//!   them at once.
//! - **A tenant's data folder is its own.** A parked run of a plugin whose
//!   runs get a data folder (the `platform` preset: the tenant's,
//!   [`cordon::plugin::tenant_data_dir`]) has that folder granted, so its
//!   key names the tenant and only that tenant's executions take it. A run
//!   without a data folder grants nothing of any tenant's, and its key
//!   ([`Key::shared`]) serves every tenant. Which of the two is decided
//!   by the plan, not by the caller ([`crate::plans::Plans::get`]).
//! - **Nothing outlives its welcome.** A parked run unused for
//!   `pool_ttl_ms` is killed and reaped (pidfd), and a key unused that long
//!   is no longer refilled. The drain kills every parked run; a SIGKILL of
//!   the service kills them too (each sandbox's init dies with the thread
//!   that started the service's sandbox spawner, `PR_SET_PDEATHSIG`, and
//!   with the service's lifeline pipe).
//!
//! # Not guaranteed
//!
//! - **Less CPU.** Every execution still gets a sandbox built and torn
//!   down; the pool moves the building off the execution's latency, not
//!   off the machine's CPU. (What a parked sandbox used to cost the
//!   service while it waited, copy-on-write sharing of the service's
//!   memory, is gone since sandboxes are cloned by `cordon serve`'s small
//!   spawner: `cordon::start_spawner`.) A parked run that expires unused costs one
//!   set-up for nothing. Throughput is bound by the CPU per execution.
//! - Parked runs of a plugin whose tree hash changed may run for up to
//!   [`CHECK_INTERVAL`] (parked, never started) before they are reaped.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cordon::plugin::{park_planned, HandlerPlan, HandlerRequest, ParkedHandler};
use cordon::Mode;

use crate::catalog::{Catalog, Runnable};
use crate::metrics::Metrics;

/// How often the pool thread asks the catalog whether its keys are still
/// current (tree hash, folder, enabled).
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How long an execution that found none parked waits for the refill under
/// way before it builds a fresh sandbox (see the module docs).
pub const REFILL_WAIT: Duration = Duration::from_millis(500);

/// What a parked run is for: an execution of exactly this plugin version
/// and handler, in this mode, for this tenant when its runs get the
/// tenant's data folder.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    /// `@scope/name`.
    pub plugin: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its verified tree hash (`None`: a development folder, unsigned).
    pub tree_hash: Option<String>,
    /// The handler.
    pub handler: String,
    /// The service's forced mode, if any (its name).
    pub mode: Option<&'static str>,
    /// The tenant whose data folder its runs get (the `platform`
    /// preset's, [`cordon::plugin::tenant_data_dir`]); `None`: runs that
    /// get no data folder, the same for every tenant
    /// ([`crate::plans::Plans::get`] keeps such plans under it).
    pub tenant: Option<String>,
}

impl Key {
    /// The key of an execution of `plugin` (as the catalog verified it)
    /// for `tenant`.
    pub fn of(plugin: &Runnable, handler: &str, mode: Option<Mode>, tenant: &str) -> Key {
        Key {
            plugin: plugin.id.clone(),
            dir: plugin.dir.clone(),
            tree_hash: plugin.tree_hash.clone(),
            handler: handler.to_owned(),
            mode: mode.map(Mode::as_str),
            tenant: Some(tenant.to_owned()),
        }
    }

    /// This key for runs that get no data folder: any tenant's.
    pub fn shared(&self) -> Key {
        Key { tenant: None, ..self.clone() }
    }

    /// Whether `other` is another version (folder or tree hash) of this
    /// key's plugin, handler and mode, for any tenant.
    pub(crate) fn is_other_version(&self, other: &Key) -> bool {
        self.plugin == other.plugin
            && self.handler == other.handler
            && self.mode == other.mode
            && (self.dir != other.dir || self.tree_hash != other.tree_hash)
    }

    /// Whether the catalog's answer for the plugin is still this key's.
    fn is_current(&self, now: &Runnable) -> bool {
        now.tree_hash == self.tree_hash && now.dir == self.dir && now.handlers.contains(&self.handler)
    }
}

struct Held {
    handler: ParkedHandler,
    at: Instant,
}

struct Slot {
    /// The request a fresh run of this key is made from, without the
    /// execution's own data.
    template: HandlerRequest,
    /// The key's plan ([`crate::plans`]), made from its verified manifest.
    plan: Arc<HandlerPlan>,
    parked: VecDeque<Held>,
    used: Instant,
    /// An execution waits for the next parked run of this key.
    waiting: bool,
    /// Executions that took this key's parked runs whose commands are not
    /// exec'd yet: the key is refilled once there are none, or when an
    /// execution waits.
    starting: usize,
    /// The last park of this key failed: nobody waits for the next.
    failing: bool,
}

#[derive(Default)]
struct State {
    slots: HashMap<Key, Slot>,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled when a park ends (parked or failed).
    parked: Condvar,
    size: usize,
    ttl: Duration,
    catalog: Box<dyn Catalog>,
    metrics: Metrics,
}

/// The warm pool; see the module docs.
pub struct Pool {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Pool {
    /// Starts the pool thread: up to `size` parked runs per key, each
    /// killed after `ttl` unused. `catalog` is asked before parking and
    /// every [`CHECK_INTERVAL`].
    pub fn start(size: usize, ttl: Duration, catalog: Box<dyn Catalog>, metrics: Metrics) -> Pool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            parked: Condvar::new(),
            size,
            ttl,
            catalog,
            metrics,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cordon-pool".into())
            .spawn(move || pool_thread(&s))
            .expect("the pool thread can be spawned");
        Pool { shared, thread: Mutex::new(Some(thread)) }
    }

    /// A parked run for an execution of `key`, if one is ready, or once the
    /// refill under way brings one (waiting up to [`REFILL_WAIT`], one
    /// execution per key at a time; a waiting execution has the refill
    /// begin at once); the pool thread parks the next (from `template()` the
    /// first time the key is seen) once the returned [`Taken::refill`] is
    /// released.
    /// Parked runs of another version of the same plugin and handler are
    /// killed and reaped (every tenant's). `key` is the one its plan is
    /// kept under ([`crate::plans::Plans::get`]): a tenant's own when its
    /// runs get the tenant's data folder, else [`Key::shared`].
    pub fn take(&self, key: &Key, template: impl FnOnce() -> (HandlerRequest, Arc<HandlerPlan>)) -> Option<Taken> {
        let now = Instant::now();
        let mut dropped = vec![];
        let taken = {
            let mut st = self.shared.state.lock().expect("pool lock");
            let stale: Vec<Key> = st.slots.keys().filter(|k| k.is_other_version(key)).cloned().collect();
            for k in stale {
                dropped.extend(st.slots.remove(&k).map(|s| s.parked).unwrap_or_default());
            }
            let seen = st.slots.contains_key(key);
            let slot = st.slots.entry(key.clone()).or_insert_with(|| {
                let (template, plan) = template();
                Slot { template, plan, parked: VecDeque::new(), used: now, waiting: false, starting: 0, failing: false }
            });
            slot.used = now;
            let mut taken = pop_live(slot, &mut dropped);
            // None parked, but a key in use is being refilled: wait for it.
            if taken.is_none() && seen && !slot.waiting && !slot.failing && self.shared.size > 0 {
                slot.waiting = true;
                self.shared.wake.notify_one();
                let deadline = now + REFILL_WAIT;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    st = self.shared.parked.wait_timeout(st, left).expect("pool lock").0;
                    // The slot may be gone meanwhile (catalog check, stop).
                    let Some(slot) = st.slots.get_mut(key) else { break };
                    taken = pop_live(slot, &mut dropped);
                    if taken.is_some() || slot.failing || st.stopping {
                        break;
                    }
                }
                if let Some(slot) = st.slots.get_mut(key) {
                    slot.waiting = false;
                }
            }
            if let (Some(_), Some(slot)) = (&taken, st.slots.get_mut(key)) {
                slot.starting += 1;
            }
            taken
        };
        self.shared.wake.notify_one();
        drop(dropped);
        match &taken {
            Some(_) => self.shared.metrics.pool_hits.inc(),
            None => self.shared.metrics.pool_misses.inc(),
        };
        self.shared.count();
        taken.map(|handler| Taken {
            handler,
            refill: Refill { key: key.clone(), shared: self.shared.clone(), released: false.into() },
        })
    }

    /// Stops the pool thread; every parked run is killed and reaped.
    pub fn stop(&self) {
        self.shared.state.lock().expect("pool lock").stopping = true;
        self.shared.wake.notify_one();
        self.shared.parked.notify_all();
        if let Some(t) = self.thread.lock().expect("pool thread lock").take() {
            let _ = t.join();
        }
    }
}

/// A parked run taken for an execution ([`Pool::take`]).
pub struct Taken {
    /// The parked run: start it once.
    pub handler: ParkedHandler,
    /// Release it once the execution's command has been exec'd; dropping
    /// it releases it too.
    pub refill: Refill,
}

/// Held while the execution that took a parked run of its key starts its
/// command: once it is released, the pool thread refills the key.
#[must_use = "releasing it has the pool refill the key: release it once the command has been exec'd"]
pub struct Refill {
    key: Key,
    shared: Arc<Shared>,
    released: std::sync::atomic::AtomicBool,
}

impl Refill {
    /// Lets the pool thread refill the key (once; later calls do nothing).
    pub fn release(&self) {
        if self.released.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut st = self.shared.state.lock().expect("pool lock");
        if let Some(slot) = st.slots.get_mut(&self.key) {
            slot.starting = slot.starting.saturating_sub(1);
        }
        drop(st);
        self.shared.wake.notify_one();
    }
}

impl Drop for Refill {
    fn drop(&mut self) {
        self.release();
    }
}

impl Shared {
    /// Sets the parked-runs gauge.
    fn count(&self) {
        let n: usize = self.state.lock().expect("pool lock").slots.values().map(|s| s.parked.len()).sum();
        self.metrics.pool_parked.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Whether `key` is still what the catalog verifies for its plugin.
    fn is_current(&self, key: &Key) -> bool {
        self.catalog.resolve(&key.plugin).is_ok_and(|r| key.is_current(&r))
    }

    /// Removes the slots the catalog no longer vouches for.
    fn check_catalog(&self) -> Vec<Held> {
        let keys: Vec<Key> = self.state.lock().expect("pool lock").slots.keys().cloned().collect();
        let gone: Vec<Key> = keys.into_iter().filter(|k| !self.is_current(k)).collect();
        let mut st = self.state.lock().expect("pool lock");
        gone.iter().flat_map(|k| st.slots.remove(k).map(|s| s.parked).unwrap_or_default()).collect()
    }
}

/// The first live parked run of `slot`; dead ones go to `dropped`.
fn pop_live(slot: &mut Slot, dropped: &mut Vec<Held>) -> Option<ParkedHandler> {
    while let Some(h) = slot.parked.pop_front() {
        if h.handler.is_dead() {
            dropped.push(h);
        } else {
            return Some(h.handler);
        }
    }
    None
}

/// The pool thread: expires, checks, refills; parks every run itself, so
/// that each parked sandbox lives at most as long as this thread.
fn pool_thread(s: &Shared) {
    let mut checked = Instant::now();
    loop {
        let now = Instant::now();
        let mut dropped: Vec<Held> = vec![];
        let next = {
            let mut st = s.state.lock().expect("pool lock");
            if st.stopping {
                dropped.extend(st.slots.drain().flat_map(|(_, slot)| slot.parked));
                drop(st);
                drop(dropped);
                s.count();
                return;
            }
            for slot in st.slots.values_mut() {
                let (keep, old): (VecDeque<Held>, VecDeque<Held>) = std::mem::take(&mut slot.parked)
                    .into_iter()
                    .partition(|h| now.duration_since(h.at) < s.ttl && !h.handler.is_dead());
                slot.parked = keep;
                dropped.extend(old);
            }
            st.slots.retain(|_, slot| !slot.parked.is_empty() || now.duration_since(slot.used) < s.ttl);
            // A key whose last take's command is not exec'd yet waits,
            // unless an execution waits for it.
            st.slots
                .iter()
                .find(|(_, slot)| {
                    slot.parked.len() < s.size
                        && now.duration_since(slot.used) < s.ttl
                        && (slot.starting == 0 || slot.waiting)
                })
                .map(|(k, slot)| (k.clone(), slot.template.clone(), slot.plan.clone()))
        };
        drop(dropped);
        if checked.elapsed() >= CHECK_INTERVAL {
            drop(s.check_catalog());
            checked = Instant::now();
        }
        match next {
            Some((key, mut template, plan)) => {
                // No catalog check here: the plan was made from the
                // manifest the catalog verified for the execution that
                // used the key, and parked runs of a key the catalog no
                // longer vouches for go at the next check.
                template.request_id = Some(format!("pool-{}", cordon::new_request_id()));
                let parked = park_planned(&plan, &template);
                let mut st = s.state.lock().expect("pool lock");
                match (parked, st.slots.get_mut(&key)) {
                    (Ok(handler), Some(slot)) if slot.parked.len() < s.size => {
                        slot.parked.push_back(Held { handler, at: Instant::now() });
                        slot.failing = false;
                        drop(st);
                        s.parked.notify_all();
                    }
                    (Ok(handler), _) => {
                        drop(st);
                        drop(handler);
                    }
                    (Err(failed), slot) => {
                        // Not refilled until an execution uses the key
                        // again: its fresh run reports the problem.
                        if let Some(slot) = slot {
                            slot.used = now.checked_sub(s.ttl).unwrap_or(now);
                            slot.failing = true;
                        }
                        drop(st);
                        s.parked.notify_all();
                        let message = failed.result.error.map(|e| e.message).unwrap_or_default();
                        eprintln!("cordon serve: the pool cannot park {} {}: {message}", key.plugin, key.handler);
                    }
                }
            }
            None => {
                let st = s.state.lock().expect("pool lock");
                if !st.stopping {
                    let wait = CHECK_INTERVAL.min(s.ttl);
                    drop(s.wake.wait_timeout(st, wait).expect("pool lock"));
                }
            }
        }
        s.count();
    }
}
