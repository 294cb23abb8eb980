//! The plans of handler runs, kept per [`Key`] (the park cache): what a
//! run of an installed plugin's handler is made from that does not depend
//! on the execution ([`cordon::plugin::HandlerPlan`]: the manifest parsed,
//! the effective policy, the mode, the ledger's verdict, the handler's
//! command), made once per plugin version instead of for every sandbox a
//! worker or the pool sets up.
//!
//! # Guarantees
//!
//! - **Made from what was verified.** A plan is made from the bytes of the
//!   plugin's `cordon.toml` read here, and only when they hash to the
//!   manifest's SHA-256 in the tree listing the catalog verified for this
//!   execution ([`crate::catalog::Runnable::manifest_sha256`]); otherwise
//!   the execution is refused (the manifest changed after its
//!   verification). Keyed by the verified tree hash and folder (with the
//!   handler and mode), so a plan is used only for an execution whose
//!   plugin verified to exactly the tree it was made from.
//! - **A tenant's data folder only in its own plans.** A plan is made for
//!   the tenant its key names (the request's `data_tenant` is set from
//!   the key, whatever the caller passed). A plan that grants a data
//!   folder (the `platform` preset: the tenant's) is kept under that
//!   tenant's key only; one that grants none is kept under the key's
//!   [`Key::shared`] form and used for every tenant. The plugin's tree
//!   hash fixes which of the two its plans are.
//! - **Checked per run as before.** The catalog verifies the plugin (its
//!   signature, its tree file by file, enabled) for every execution before
//!   a plan is looked up: a plugin disabled, removed, re-installed or
//!   modified is refused, or gets another key, at its next execution. What
//!   the plan does not hold is looked at for every sandbox
//!   ([`cordon::plugin::park_planned`]).
//! - **Bounded.** A key of another version of the same plugin and handler
//!   drops the old one; past [`MAX_PLANS`] keys, all are dropped.
//!
//! Only installed (verified) plugins are planned ahead: a development
//! folder ([`crate::catalog::FolderCatalog`]) has no tree hash to key a
//! plan by, and is planned for each run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cordon::plugin::{plan_handler, HandlerPlan, HandlerRequest, HandlerResult};
use cordon_registry::Digest256;

use crate::pool::Key;

/// The most keys kept.
pub const MAX_PLANS: usize = 256;

/// The plans by key; see the module docs.
#[derive(Default)]
pub struct Plans {
    plans: Mutex<HashMap<Key, Arc<HandlerPlan>>>,
}

impl Plans {
    /// No plans yet.
    pub fn new() -> Plans {
        Plans::default()
    }

    /// The plan of `key` for runs made from `req` (the service's request for
    /// that plugin folder and handler; its `data_tenant` is taken from
    /// `key`), its manifest verified to hash to `manifest_sha256`: the one
    /// made before, or one made now. `None` for a plugin without a verified
    /// tree (planned for each run). A plan that cannot be made is the run's
    /// refusal, as a fresh run's would be; it is not kept. A plan without a
    /// data folder is kept, and found, under [`Key::shared`]: the pool
    /// parks its runs under the key [`Plans::key_of`] names.
    pub fn get(
        &self,
        key: &Key,
        manifest_sha256: Option<Digest256>,
        req: &HandlerRequest,
    ) -> Option<Result<Arc<HandlerPlan>, Box<HandlerResult>>> {
        key.tree_hash.as_ref()?;
        let expected = manifest_sha256?;
        let shared = key.shared();
        {
            let plans = self.plans.lock().expect("plans lock");
            // Only a plan without a data folder is anyone's.
            let any = plans.get(&shared).filter(|p| p.data_dir().is_none());
            if let Some(p) = any.or_else(|| plans.get(key)) {
                return Some(Ok(p.clone()));
            }
        }
        let req = HandlerRequest { data_tenant: key.tenant.clone(), ..req.clone() };
        let made = match cordon_registry::read_manifest(&req.plugin_dir, expected) {
            Ok(bytes) => plan_handler(&req, &bytes).map(Arc::new),
            Err(message) => Err(refusal(&req, message)),
        };
        if let Ok(plan) = &made {
            let mut plans = self.plans.lock().expect("plans lock");
            plans.retain(|k, _| !k.is_other_version(key));
            if plans.len() >= MAX_PLANS {
                plans.clear();
            }
            plans.insert(Plans::key_of(key, plan), plan.clone());
        }
        Some(made)
    }

    /// The key `plan`, got for `key`, is kept under: `key`'s
    /// [`Key::shared`] form when its runs get no data folder.
    pub fn key_of(key: &Key, plan: &HandlerPlan) -> Key {
        match plan.data_dir() {
            Some(_) => key.clone(),
            None => key.shared(),
        }
    }

    /// How many keys have a plan.
    pub fn len(&self) -> usize {
        self.plans.lock().expect("plans lock").len()
    }

    /// Whether no key has a plan.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A run refused before its plan was made.
fn refusal(req: &HandlerRequest, message: String) -> Box<HandlerResult> {
    let id = req.request_id.clone().unwrap_or_else(cordon::new_request_id);
    let mut result = cordon::ExecutionResult::unstarted(&id, req.mode.unwrap_or(cordon::Mode::Container), message);
    if let Some(e) = &mut result.error {
        e.code = cordon::ErrorCode::SetupFailed;
    }
    Box::new(HandlerResult {
        result,
        plugin: None,
        trace_id: String::new(),
        policy_digest: None,
        artifacts: vec![],
        subject: cordon::audit::Subject { handler: Some(req.handler.clone()), ..Default::default() },
        artifacts_skipped: vec![],
    })
}
