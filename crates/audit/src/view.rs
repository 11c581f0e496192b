//! An audit entry as the log holds it ([`StoredAudit`], sealed or not yet) and as
//! `GET /v1/audit` lists it ([`AuditRecordView`]): shared by the store, the server and
//! the typed client (`tenancy-client`).

use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};

use crate::record::AuditEntry;

/// An audit entry as the log holds it, sealed or not yet: `pos` orders the log's
/// entries (and pages a list), `seq`, `prev_hash` and `hash` are set once it is
/// sealed into the hash chain (a sealed one is a `tenancy_audit::AuditRecord`).
/// Serialized (as `GET /v1/audit` lists it and an offboarding export writes it) it is
/// the entry's members followed by `seq`, `prev_hash` and `hash`, `null` until sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAudit {
    #[serde(skip)]
    pub pos: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub seq: Option<i64>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// One audit record; `seq`, `prev_hash` and `hash` are set once the record is sealed
/// into the hash chain.
///
/// The stored entry as it is (`StoredAudit` serializes as the entry's members and the
/// three seal members). Its schema is the entry's (`tenancy_audit::AuditEntry`) with
/// those three added, as one object: a derived schema of a flattened entry would be an
/// `allOf`, another document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditRecordView(pub StoredAudit);

/// The members [`AuditRecordView`] adds to the entry's.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only.
struct Seal {
    seq: Option<i64>,
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl utoipa::PartialSchema for AuditRecordView {
    fn schema() -> RefOr<Schema> {
        let (RefOr::T(Schema::Object(mut view)), RefOr::T(Schema::Object(seal))) =
            (AuditEntry::schema(), <Seal as utoipa::PartialSchema>::schema())
        else {
            unreachable!("derived schemas of structs are objects")
        };
        view.properties.extend(seal.properties);
        view.required.extend(seal.required);
        view.description = Some(
            "One audit record; `seq`, `prev_hash` and `hash` are set once the record is sealed\ninto the hash chain."
                .to_owned(),
        );
        RefOr::T(Schema::Object(view))
    }
}

impl utoipa::ToSchema for AuditRecordView {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <AuditEntry as utoipa::ToSchema>::schemas(schemas);
    }
}
