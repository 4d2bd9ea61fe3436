//! Condition types written on Tollgate resources.

/// A decision was made and recorded (status.decision is set).
pub const CONDITION_DECIDED: &str = "Decided";
/// GitHub confirmed the decision, or already had an answer for the request.
pub const CONDITION_DELIVERED: &str = "Delivered";
/// Something holds the gate now; the message names it and until when.
pub const CONDITION_BLOCKED: &str = "Blocked";
/// Tenancy refuses the gate: its namespace may not gate its repository.
pub const CONDITION_FORBIDDEN: &str = "Forbidden";
/// The object is valid as far as the schema goes but cannot be acted on.
pub const CONDITION_INVALID: &str = "Invalid";
/// A ReleasePause currently holds releases in its scope.
pub const CONDITION_ACTIVE: &str = "Active";
/// A ReleasePause was resumed for its current (sha, reason).
pub const CONDITION_RESUMED: &str = "Resumed";
/// The gate's `spec.sha` is not the commit of its workflow run: Tollgate never
/// answers for it.
pub const CONDITION_SHA_MISMATCH: &str = "ShaMismatch";
/// The gate's spec was tightened to the intake policy matching it (checks
/// added, dry run or fail-open refused); the message says what.
pub const CONDITION_POLICY_BOUND: &str = "PolicyBound";
/// A ReleasePause's scope names repositories its namespace may not gate; it
/// holds only the rest.
pub const CONDITION_SCOPE_RESTRICTED: &str = "ScopeRestricted";
/// GitHub refused the answer (a permission or setting of the App); retried
/// with backoff until fixed.
pub const CONDITION_DELIVERY_DENIED: &str = "DeliveryDenied";
/// A gate's metric analysis could not be read: Prometheus is unreachable or
/// answered an error. Retried with backoff; never counts as a pass.
pub const CONDITION_ANALYSIS_ERROR: &str = "AnalysisError";
