//! Quotas: what a tenant may consume of its plan's quotas, exactly (see
//! docs/entitlements.md). A quota without a period is consumed and released (seats);
//! one with a period counts usage in the current UTC day or month. A hard quota
//! refuses a consume that would go over its limit (429 `quota-exceeded`, nothing
//! consumed); a soft one allows it and reports the overage. Several quotas consume
//! together, all or nothing. The store writes each consume with one conditional write,
//! so replicas sharing a database never grant more than the limit, and its
//! `QuotaThresholdReached` and `QuotaExceeded` events in the same transaction.
//! Consumes and releases write no audit entry (they are as frequent as the tenant's own
//! traffic); their refusals are 429s and `QuotaExceeded` events.

pub mod ops;
pub mod pruner;
