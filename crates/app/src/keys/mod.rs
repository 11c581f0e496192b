//! API keys: the API (`ops`) and authentication of bearer tokens (`auth`).

pub mod auth;
pub mod ops;
