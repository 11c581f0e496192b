//! Domain types and rules of Tenancy. This crate does no IO.
