//! The archive's Parquet files: sealed audit records and events as columns, written to
//! bytes and read back. One row group per file (a file holds at most one archiver batch,
//! appended a page of rows at a time), Snappy pages, no dictionary for the columns
//! whose values are all distinct (ids, hashes, details: a dictionary there only costs
//! memory and time). Times are `TIMESTAMP(MILLIS, UTC)`; `detail` (and an event's
//! `resources`) are JSON text, which Athena's `json_extract_scalar` and DuckDB's
//! `json_extract_string` read. The `date` partition is the path's, not a column.
//!
//! An audit record read back is the record as sealed (its JSON members are parsed
//! again), so its hash is recomputed from the file alone: the archive verifies without
//! the database.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tenancy_audit::{AuditEntry, AuditRecord};
use tenancy_domain::event::Event;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::StoredEvent;

fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// The audit files' columns, in this order (docs/audit.md lists them with the Athena DDL).
pub fn audit_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        text("id", false),
        Field::new("time", utc_millis(), false),
        text("actor_key_id", true),
        text("actor_role", false),
        text("action", false),
        text("target", false),
        text("tenant_id", true),
        text("request_id", true),
        text("source_ip", true),
        text("outcome", false),
        text("detail", false),
        text("prev_hash", false),
        text("hash", false),
    ]))
}

/// The columns of an offboarding export's `audit.parquet`: the archive's, but `seq`,
/// `prev_hash` and `hash` are null for records not sealed yet.
pub fn export_audit_schema() -> SchemaRef {
    let fields = audit_schema()
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "seq" | "prev_hash" | "hash" => f.as_ref().clone().with_nullable(true),
            _ => f.as_ref().clone(),
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new(fields))
}

/// The event files' columns.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        text("id", false),
        text("source", false),
        text("detail_type", false),
        Field::new("time", utc_millis(), false),
        text("tenant_id", true),
        text("resources", false),
        text("detail", false),
    ]))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn opt_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn times(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
}

/// One batch as one Parquet file.
fn one_file(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut w = writer(Vec::new(), batch.schema(), batch.num_rows())?;
    w.write(batch).map_err(Error::internal)?;
    w.into_inner().map_err(Error::internal)
}

/// Columns whose values are (nearly) all distinct: written without a dictionary.
const DISTINCT: [&str; 6] = ["id", "detail", "prev_hash", "hash", "request_id", "resources"];

/// A Parquet writer with the archive's settings (Snappy, `rows` per row group, no
/// dictionary for [`DISTINCT`] columns).
pub fn writer<W: std::io::Write + Send>(out: W, schema: SchemaRef, rows: usize) -> Result<ArrowWriter<W>> {
    let mut props =
        WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(rows.max(1)));
    for f in schema.fields().iter().filter(|f| DISTINCT.contains(&f.name().as_str())) {
        props = props.set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(f.name().as_str()), false);
    }
    ArrowWriter::try_new(out, schema, Some(props.build())).map_err(Error::internal)
}

/// Audit records sealed or not (an offboarding export's), as a batch of
/// [`export_audit_schema`].
pub fn export_audit_batch(rows: &[tenancy_audit::StoredAudit]) -> Result<RecordBatch> {
    let details = rows.iter().map(|r| json_text(&r.entry.detail)).collect::<Result<Vec<_>>>()?;
    let e = |f: fn(&AuditEntry) -> &str| strings(rows.iter().map(move |r| f(&r.entry)));
    let o = |f: fn(&AuditEntry) -> Option<&str>| opt_strings(rows.iter().map(move |r| f(&r.entry)));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.seq).collect::<Int64Array>()),
        e(|e| &e.id),
        times(rows.iter().map(|r| r.entry.time.millis())),
        o(|e| e.actor_key_id.as_deref()),
        e(|e| &e.actor_role),
        e(|e| &e.action),
        e(|e| &e.target),
        o(|e| e.tenant_id.as_deref()),
        o(|e| e.request_id.as_deref()),
        o(|e| e.source_ip.as_deref()),
        e(|e| &e.outcome),
        strings(details.iter().map(String::as_str)),
        opt_strings(rows.iter().map(|r| r.prev_hash.as_deref())),
        opt_strings(rows.iter().map(|r| r.hash.as_deref())),
    ];
    RecordBatch::try_new(export_audit_schema(), columns).map_err(Error::internal)
}

fn json_text(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(Error::internal)
}

/// Sealed audit records as one Parquet file.
pub fn audit_to_parquet(records: &[AuditRecord]) -> Result<Vec<u8>> {
    one_file(&audit_batch(records)?)
}

/// Sealed audit records as a batch of [`audit_schema`].
pub fn audit_batch(records: &[AuditRecord]) -> Result<RecordBatch> {
    let details = records.iter().map(|r| json_text(&r.entry.detail)).collect::<Result<Vec<_>>>()?;
    let e = |f: fn(&AuditEntry) -> &str| strings(records.iter().map(move |r| f(&r.entry)));
    let o = |f: fn(&AuditEntry) -> Option<&str>| opt_strings(records.iter().map(move |r| f(&r.entry)));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.seq))),
        e(|e| &e.id),
        times(records.iter().map(|r| r.entry.time.millis())),
        o(|e| e.actor_key_id.as_deref()),
        e(|e| &e.actor_role),
        e(|e| &e.action),
        e(|e| &e.target),
        o(|e| e.tenant_id.as_deref()),
        o(|e| e.request_id.as_deref()),
        o(|e| e.source_ip.as_deref()),
        e(|e| &e.outcome),
        strings(details.iter().map(String::as_str)),
        strings(records.iter().map(|r| r.prev_hash.as_str())),
        strings(records.iter().map(|r| r.hash.as_str())),
    ];
    RecordBatch::try_new(audit_schema(), columns).map_err(Error::internal)
}

/// Events as one Parquet file.
pub fn events_to_parquet(events: &[StoredEvent]) -> Result<Vec<u8>> {
    one_file(&events_batch(events)?)
}

/// Events as a batch of [`events_schema`].
pub fn events_batch(events: &[StoredEvent]) -> Result<RecordBatch> {
    let resources = events.iter().map(|e| json_text(&e.event.resources)).collect::<Result<Vec<_>>>()?;
    let details = events.iter().map(|e| json_text(&e.event.detail)).collect::<Result<Vec<_>>>()?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.seq))),
        strings(events.iter().map(|e| e.event.id.as_str())),
        strings(events.iter().map(|e| e.event.source.as_str())),
        strings(events.iter().map(|e| e.event.detail_type.as_str())),
        times(events.iter().map(|e| e.event.time.millis())),
        opt_strings(events.iter().map(|e| e.event.tenant_id.as_deref())),
        strings(resources.iter().map(String::as_str)),
        strings(details.iter().map(String::as_str)),
    ];
    RecordBatch::try_new(events_schema(), columns).map_err(Error::internal)
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("unreadable archive file: {e}"))
}

fn batches(bytes: bytes::Bytes, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(corrupt)?;
    if builder.schema().fields() != schema.fields() {
        return Err(corrupt("the columns are not the archive's"));
    }
    let reader = builder.build().map_err(corrupt)?;
    reader.collect::<std::result::Result<Vec<_>, _>>().map_err(corrupt)
}

struct Columns<'a>(&'a RecordBatch);

impl Columns<'_> {
    fn int(&self, i: usize, row: usize) -> i64 {
        self.0.column(i).as_primitive::<Int64Type>().value(row)
    }
    fn time(&self, i: usize, row: usize) -> Timestamp {
        Timestamp(self.0.column(i).as_primitive::<TimestampMillisecondType>().value(row))
    }
    fn text(&self, i: usize, row: usize) -> String {
        self.0.column(i).as_string::<i32>().value(row).to_owned()
    }
    fn opt(&self, i: usize, row: usize) -> Option<String> {
        let c = self.0.column(i).as_string::<i32>();
        (!c.is_null(row)).then(|| c.value(row).to_owned())
    }
    fn json<T: serde::de::DeserializeOwned>(&self, i: usize, row: usize) -> Result<T> {
        serde_json::from_str(self.0.column(i).as_string::<i32>().value(row)).map_err(corrupt)
    }
}

/// The audit records of a file, as sealed.
pub fn audit_from_parquet(bytes: bytes::Bytes) -> Result<Vec<AuditRecord>> {
    let mut out = Vec::new();
    for batch in batches(bytes, &audit_schema())? {
        let c = Columns(&batch);
        for row in 0..batch.num_rows() {
            out.push(AuditRecord {
                seq: c.int(0, row),
                entry: AuditEntry {
                    id: c.text(1, row),
                    time: c.time(2, row),
                    actor_key_id: c.opt(3, row),
                    actor_role: c.text(4, row),
                    action: c.text(5, row),
                    target: c.text(6, row),
                    tenant_id: c.opt(7, row),
                    request_id: c.opt(8, row),
                    source_ip: c.opt(9, row),
                    outcome: c.text(10, row),
                    detail: c.json(11, row)?,
                },
                prev_hash: c.text(12, row),
                hash: c.text(13, row),
            });
        }
    }
    Ok(out)
}

/// The events of a file.
pub fn events_from_parquet(bytes: bytes::Bytes) -> Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    for batch in batches(bytes, &events_schema())? {
        let c = Columns(&batch);
        for row in 0..batch.num_rows() {
            out.push(StoredEvent {
                seq: c.int(0, row),
                event: Event {
                    id: c.text(1, row),
                    source: c.text(2, row),
                    detail_type: c.text(3, row),
                    time: c.time(4, row),
                    tenant_id: c.opt(5, row),
                    resources: c.json(6, row)?,
                    detail: c.json(7, row)?,
                },
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(i: i64) -> AuditEntry {
        AuditEntry {
            id: format!("aud_{i}"),
            time: Timestamp(1_700_000_000_000 + i),
            actor_key_id: (i % 2 == 0).then(|| "key_1".to_owned()),
            actor_role: "admin".into(),
            action: "tenant.change_plan".into(),
            target: format!("tenant/t{i}"),
            tenant_id: Some(format!("t{i}")),
            request_id: None,
            source_ip: Some("127.0.0.1".into()),
            outcome: "success".into(),
            detail: json!({"region": "eu-west-1", "request": {"plan": "pro"}, "n": 1.5}),
        }
    }

    #[test]
    fn audit_records_read_back_as_sealed() {
        let mut prev = tenancy_audit::GENESIS_HASH.to_owned();
        let mut records = Vec::new();
        for seq in 1..=3 {
            let r = AuditRecord::seal(entry(seq), seq, &prev);
            prev = r.hash.clone();
            records.push(r);
        }
        let bytes = audit_to_parquet(&records).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        let back = audit_from_parquet(bytes.into()).unwrap();
        assert_eq!(back, records);
        assert!(back.iter().all(|r| r.compute_hash() == r.hash), "hashes recompute from the file");
    }

    #[test]
    fn events_read_back() {
        let mut e = Event::new("TenantPlanChanged", Some("t1"), vec!["tenant/t1".into()], json!({"plan": "pro"}));
        e.time = Timestamp(1_700_000_000_123);
        let events = vec![StoredEvent { seq: 7, event: e }];
        let back = events_from_parquet(events_to_parquet(&events).unwrap().into()).unwrap();
        assert_eq!(back, events);
    }

    #[test]
    fn another_file_is_refused() {
        let events = events_to_parquet(&[]).unwrap();
        assert!(audit_from_parquet(events.into()).is_err());
        assert!(audit_from_parquet(bytes::Bytes::from_static(b"not parquet")).is_err());
    }
}
