//! Self-service sign-ups awaiting activation (docs/self-service.md).

use async_trait::async_trait;
use tenancy_domain::signup::Signup;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::store::Effects;

/// Object safe: held as `Arc<dyn SignupStore>` (see [`crate::Store::signups`]).
///
/// A sign-up is found by the hash of its activation token; a token is used once: the
/// claim is one conditional write, so of two activations racing with one token only
/// one wins.
#[async_trait]
pub trait SignupStore: Send + Sync {
    /// Records a sign-up with `fx` (its event and audit entry), in one transaction.
    async fn signup_create(&self, signup: &Signup, fx: &Effects) -> Result<()>;
    /// The sign-up of a token hash, used or not, expired or not (until purged).
    async fn signup_get(&self, token_hash: &str) -> Result<Option<Signup>>;
    /// Marks the sign-up used at `now` for `tenant_id` if it is unused and unexpired at
    /// `now`; whether it was (false: someone else used it, or it expired meanwhile).
    async fn signup_claim(&self, token_hash: &str, tenant_id: &str, now: Timestamp) -> Result<bool>;
    /// Undoes a claim whose tenant could not be created, so the token may be used again.
    async fn signup_unclaim(&self, token_hash: &str) -> Result<()>;
    /// Deletes every sign-up whose token expired at or before `now`; how many.
    async fn signup_purge_expired(&self, now: Timestamp) -> Result<u64>;
}
