//! The audit trail of executions: `cordon-audit`, re-exported, plus
//! [`run_audited`], which runs a request between its start and its record.
//!
//! Everything about records, the log, begin/complete, `LOST` recovery,
//! verification and filtering lives in `cordon_audit` (see its crate docs
//! for the guarantees); an [`ExecutionResult`] turns into a record's ending
//! with [`ExecutionResult::audit_ending`].

pub use cordon_audit::*;
pub use cordon_plugin::traceparent::{
    TraceParent, TraceParentError, ENV as TRACEPARENT_ENV, HEADER as TRACEPARENT_HEADER,
};

use cordon_core::trace;

use crate::result::ExecutionResult;
use crate::runner::RunRequest;

/// Runs `req` with its audit record: the start is recorded before the
/// command can start (a run whose start cannot be recorded does not start:
/// its result is `SETUP_FAILED` naming the log), the record is appended
/// when it ends. In process and container mode the start is recorded once
/// the sandbox is parked, while its init builds the namespaces and mounts
/// (see [`crate::runner::run_answering_gated`]); a run that fails before it
/// is parked is begun then, and recorded as before. A record that cannot
/// be appended is reported in the result's `warnings`, and the run is
/// recorded as lost later.
pub fn run_audited(req: &RunRequest, trail: &AuditTrail, subject: &Subject) -> ExecutionResult {
    let mut req = req.clone();
    req.protect.extend(trail.protected());
    let request_id = req.request_id.get_or_insert_with(crate::new_request_id).clone();
    let req = req;
    // What only the record needs (the values it redacts, the policy's
    // digest, the log's end) is worked out once the command has started,
    // while it starts up: nothing of it is needed before.
    let for_the_record = || (secret_values(&req.policy, &req.host_env), policy_digest(&req.policy));
    let started: std::cell::OnceCell<AuditedRun> = std::cell::OnceCell::new();
    let tried = std::cell::Cell::new(false);
    let begin = || -> Result<(), Box<ExecutionResult>> {
        tried.set(true);
        let begun = trail.begin(subject, &request_id, Some(req.mode));
        trace::step("audit: begin");
        match begun {
            Ok(s) => {
                let _ = started.set(s);
                Ok(())
            }
            Err(e) => {
                let mut r = ExecutionResult::unstarted(&request_id, req.mode, e.render());
                r.redact(&for_the_record().0);
                Err(Box::new(r))
            }
        }
    };
    // The record is written while the sandbox's init tears its namespaces
    // down; `after` waits for that before returning.
    let mut prepared = None;
    let (mut result, after) = crate::runner::run_answering_gated(&req, &mut || begin(), &mut || {
        prepared = Some(for_the_record());
        if let Some(s) = started.get() {
            s.read_ahead();
        }
    });
    trace::step("audit: run returned");
    // A run that failed before it was parked is begun now, as it was
    // before anything ran, so that its failure is recorded the same way.
    if !tried.get() {
        if let Err(refused) = begin() {
            return *refused;
        }
    }
    let Some(started) = started.into_inner() else {
        // The begin failed: `result` is its refusal, already redacted.
        return result;
    };
    let (secrets, digest) = prepared.unwrap_or_else(for_the_record);
    result.redact(&secrets);
    if let Err(e) = started.complete(result.audit_ending(&digest), &secrets) {
        result.warnings.push(e.render());
    }
    trace::step("audit: complete");
    drop(after);
    result
}
