//! Connections (docs/connections.md): named credentials for outbound HTTP. `ops.rs` the
//! API operations (metadata in the `connections` table, the credential sealed as the
//! platform secret `connection.<name>`), `auth.rs` the [`auth::Connector`] that turns a
//! connection into a request header at call time for `http:invoke`, provisioning hooks
//! and webhook deliveries (OAuth tokens fetched and cached in memory).

pub mod auth;
pub mod ops;
