//! The write commands as sent: a replace's statement, sent alone as a `findAndModify` or, for many users,
//! in one `update` command, and a log push's `findAndModify`.
//!
//! Each is kept as typed parts and serialized (`serde`, the `bson` crate's raw serializer) into each
//! attempt's command in one pass, so every pass and log entry is copied once per attempt. Built from
//! nested `rawdoc!` values instead, each level of nesting copies its contents again: about fifteen copies
//! of a 20 + 20 pass write before it reached the driver (`make bench`, handler-only
//! `update_tickets_20x2_passes` and `push_log`).

use mongodb::bson::{rawdoc, DateTime, RawArrayBuf, RawBson, RawDocument, RawDocumentBuf};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::derived_id;
use crate::schema::{field, reserved, PassKind, UserId};

/// One replace as an `update` statement: an upsert on `user_id` with a two-stage pipeline, every field
/// written only when the stored document is not newer than `timestamp`.
#[derive(Debug, Serialize)]
pub(super) struct ReplaceStatement {
    q: RawDocumentBuf,
    u: ReplacePipeline,
    upsert: bool,
}

type ReplacePipeline = (SetStage<IndexStage>, SetStage<WriteStage>);

impl ReplaceStatement {
    /// `passes`: each array being written, with its new passes in order.
    pub(super) fn new(user: UserId, timestamp: i64, expires_at: DateTime, passes: Vec<(PassKind, Vec<RawDocumentBuf>)>) -> Self {
        // A stored timestamp that is not a time (missing, not a number, outside 0..=2^53-1: see
        // `Millis::from_number`) orders nothing, so the write replaces it rather than being refused for ever.
        let stored = format!("${}", field::TIMESTAMP);
        let writable = rawdoc! { "$or": [
            { "$not": [{ "$isNumber": stored.as_str() }] },
            { "$lt": [stored.as_str(), 0_i64] },
            { "$gt": [stored.as_str(), payload::MAX_SAFE_INTEGER] },
            { "$lte": [stored.as_str(), timestamp] },
        ] };
        let guarded = |name: &'static str| (writable.clone(), format!("${name}"));
        let mut index = Vec::new();
        let mut merged = Vec::new();
        for (kind, new_passes) in passes {
            let (index_stage, merge) = merge_stages(kind, new_passes);
            index.push((kind.field(), Guarded::new(guarded(kind.field()), index_stage)));
            merged.push((kind.field(), Guarded::new(guarded(kind.field()), merge)));
        }
        let write = WriteStage {
            id: rawdoc! { "$ifNull": ["$_id", derived_id(user)] },
            timestamp: Guarded::new(guarded(field::TIMESTAMP), timestamp),
            expires_at: Guarded::new(guarded(field::EXPIRES_AT), expires_at),
            passes: merged,
        };
        ReplaceStatement {
            q: rawdoc! { field::USER_ID: user },
            u: (SetStage { set: IndexStage(index) }, SetStage { set: write }),
            upsert: true,
        }
    }

    /// Aims the statement at the user's document with this `_id`: an `update` statement takes no `sort`
    /// before MongoDB 8.0, so the bulk replace names the document the rule picked (`cache.rs`,
    /// [`super::user_document_order`]) instead. Still an upsert: a document deleted meanwhile is made again.
    pub(super) fn target(&mut self, user: UserId, id: RawBson) {
        self.q = rawdoc! { field::USER_ID: user, "_id": id };
    }
}

/// A single replace: one `findAndModify` of [`ReplaceStatement`]'s filter and pipeline on the document
/// the rule picks (`sort`); the reply's `value` is that document's stored `timestamp` before the write
/// (null when the write created it), which tells a refused write from an applied one.
#[derive(Serialize)]
pub(super) struct ReplaceCommand<'a> {
    #[serde(rename = "findAndModify")]
    collection: &'a str,
    query: &'a RawDocument,
    sort: &'a RawDocument,
    update: &'a ReplacePipeline,
    upsert: bool,
    fields: &'a RawDocument,
    #[serde(rename = "writeConcern", skip_serializing_if = "Option::is_none")]
    write_concern: Option<&'a RawDocument>,
    #[serde(rename = "maxTimeMS")]
    max_time_ms: i64,
}

impl<'a> ReplaceCommand<'a> {
    pub(super) fn new(
        collection: &'a str,
        statement: &'a ReplaceStatement,
        sort: &'a RawDocument,
        fields: &'a RawDocument,
        write_concern: Option<&'a RawDocument>,
        max_time_ms: i64,
    ) -> Self {
        ReplaceCommand {
            collection,
            query: &statement.q,
            sort,
            update: &statement.u,
            upsert: statement.upsert,
            fields,
            write_concern,
            max_time_ms,
        }
    }
}

/// An `update` command: statements, the client's write concern (a raw command does not inherit it) and
/// the attempt's server-side time limit.
#[derive(Serialize)]
pub(super) struct UpdateCommand<'a> {
    pub update: &'a str,
    pub updates: &'a [&'a ReplaceStatement],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered: Option<bool>,
    #[serde(rename = "writeConcern", skip_serializing_if = "Option::is_none")]
    pub write_concern: Option<&'a RawDocument>,
    #[serde(rename = "maxTimeMS")]
    pub max_time_ms: i64,
}

/// A log push: one `findAndModify` upsert on `user_id` whose pipeline is one [`PushStage`], on the
/// document the rule picks (`sort`); the reply's `value` is the document before the write, as `fields`
/// projects it.
#[derive(Serialize)]
pub(super) struct PushCommand<'a> {
    #[serde(rename = "findAndModify")]
    pub collection: &'a str,
    pub query: &'a RawDocument,
    pub sort: &'a RawDocument,
    pub update: [SetStage<&'a PushStage<'a>>; 1],
    pub upsert: bool,
    pub fields: &'a RawDocument,
    #[serde(rename = "writeConcern", skip_serializing_if = "Option::is_none")]
    pub write_concern: Option<&'a RawDocument>,
    #[serde(rename = "maxTimeMS")]
    pub max_time_ms: i64,
}

/// A push's `$set` stage: `_id` (kept, or derived for a new document), the log with `entry` appended and
/// cut to its newest `cap` entries, and `expires_at`; with a client `id`, the log and `expires_at` change
/// only when no logged entry has that id. A stored log that is not an array (the collection is shared)
/// holds no entries, and the push replaces it rather than failing on it for ever.
#[derive(Debug)]
pub(super) struct PushStage<'a> {
    pub user: UserId,
    pub log: &'static str,
    pub entry: RawDocumentBuf,
    pub cap: i64,
    pub expires_at: DateTime,
    pub id: Option<&'a str>,
}

impl Serialize for PushStage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// `{ $ifNull: [value, otherwise] }`
        #[derive(Serialize)]
        struct IfNull<'a, T> {
            #[serde(rename = "$ifNull")]
            operands: (&'a str, T),
        }
        /// What the log holds: `{ $cond: [{ $isArray: "$log" }, "$log", []] }`.
        #[derive(Serialize)]
        struct Entries<'a> {
            #[serde(rename = "$cond")]
            cond: (IsArray<'a>, &'a str, [(); 0]),
        }
        #[derive(Serialize)]
        struct IsArray<'a> {
            #[serde(rename = "$isArray")]
            value: &'a str,
        }
        /// `{ $slice: [{ $concatArrays: [entries, { $literal: [entry] }] }, -cap] }`
        #[derive(Serialize)]
        struct Appended<'a> {
            #[serde(rename = "$slice")]
            slice: (ConcatArrays<'a>, i64),
        }
        #[derive(Serialize)]
        struct ConcatArrays<'a> {
            #[serde(rename = "$concatArrays")]
            arrays: (&'a Entries<'a>, LiteralEntries<'a>),
        }
        /// `$literal`: client strings that start with `$` are data, not field paths.
        #[derive(Serialize)]
        struct LiteralEntries<'a> {
            #[serde(rename = "$literal")]
            entries: [&'a RawDocument; 1],
        }
        /// `{ $in: [id, { $map: { input: entries, as: "e", in: { $ifNull: ["$$e.id", null] } } }] }`
        #[derive(Serialize)]
        struct Logged<'a> {
            #[serde(rename = "$in")]
            operands: (&'a str, LoggedIds<'a>),
        }
        #[derive(Serialize)]
        struct LoggedIds<'a> {
            #[serde(rename = "$map")]
            map: MapIds<'a>,
        }
        #[derive(Serialize)]
        struct MapIds<'a> {
            input: &'a Entries<'a>,
            #[serde(rename = "as")]
            name: &'static str,
            #[serde(rename = "in")]
            each: IfNull<'a, ()>,
        }
        /// `{ $cond: [logged, "$field", new] }`
        #[derive(Serialize)]
        struct UnlessLogged<'a, T> {
            #[serde(rename = "$cond")]
            cond: (&'a Logged<'a>, String, T),
        }

        let logged = format!("${}", self.log);
        let entries = Entries { cond: (IsArray { value: &logged }, &logged, []) };
        let appended = Appended { slice: (ConcatArrays { arrays: (&entries, LiteralEntries { entries: [&self.entry] }) }, -self.cap) };
        let mut stage = serializer.serialize_map(Some(3))?;
        stage.serialize_entry("_id", &IfNull { operands: ("$_id", derived_id(self.user)) })?;
        match self.id {
            Some(id) => {
                let logged_id = format!("$$e.{}", field::LOG_ENTRY_ID);
                let each = IfNull { operands: (&logged_id, ()) };
                let duplicate = Logged { operands: (id, LoggedIds { map: MapIds { input: &entries, name: "e", each } }) };
                stage.serialize_entry(self.log, &UnlessLogged { cond: (&duplicate, logged.clone(), appended) })?;
                let stored = format!("${}", field::EXPIRES_AT);
                stage.serialize_entry(field::EXPIRES_AT, &UnlessLogged { cond: (&duplicate, stored, self.expires_at) })?;
            }
            None => {
                stage.serialize_entry(self.log, &appended)?;
                stage.serialize_entry(field::EXPIRES_AT, &self.expires_at)?;
            }
        }
        stage.end()
    }
}

/// A `$set` pipeline stage.
#[derive(Debug, Serialize)]
pub(super) struct SetStage<T> {
    #[serde(rename = "$set")]
    pub set: T,
}

/// `{ $cond: [writable, new, "$field"] }`: the new value where the stored document is not newer, else the
/// stored one.
#[derive(Debug, Serialize)]
struct Guarded<T> {
    #[serde(rename = "$cond")]
    cond: (RawDocumentBuf, T, String),
}

impl<T> Guarded<T> {
    fn new((writable, stored): (RawDocumentBuf, String), new: T) -> Self {
        Guarded { cond: (writable, new, stored) }
    }
}

/// The first stage: each written array, for the second stage only, as an index of its stored passes.
#[derive(Debug)]
struct IndexStage(Vec<(&'static str, Guarded<RawDocumentBuf>)>);

/// The second stage: the document's `_id`, `timestamp`, `expires_at` and the merged arrays.
#[derive(Debug)]
struct WriteStage {
    id: RawDocumentBuf,
    timestamp: Guarded<i64>,
    expires_at: Guarded<DateTime>,
    passes: Vec<(&'static str, Guarded<Vec<MergePass>>)>,
}

impl Serialize for IndexStage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut stage = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            stage.serialize_entry(name, value)?;
        }
        stage.end()
    }
}

impl Serialize for WriteStage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut stage = serializer.serialize_map(Some(3 + self.passes.len()))?;
        stage.serialize_entry("_id", &self.id)?;
        stage.serialize_entry(field::TIMESTAMP, &self.timestamp)?;
        stage.serialize_entry(field::EXPIRES_AT, &self.expires_at)?;
        for (name, value) in &self.passes {
            stage.serialize_entry(name, value)?;
        }
        stage.end()
    }
}

/// One new pass over the stored pass with its uuid: `{ $mergeObjects: [stored, { $literal: new }] }`.
#[derive(Debug, Serialize)]
struct MergePass {
    #[serde(rename = "$mergeObjects")]
    merge: (RawDocumentBuf, Literal),
}

/// `{ $literal: value }`: client strings that start with `$` are data, not field paths.
#[derive(Debug, Serialize)]
struct Literal {
    #[serde(rename = "$literal")]
    value: RawDocumentBuf,
}

/// The two `$set` stages that write one pass array: each new pass merged over the stored pass with the
/// same `pass_uuid` (stored fields first, so the new values win and fields only the stored pass has
/// survive), less the [`reserved`] names a stored pass must not carry into the new one.
///
/// The first stage replaces the stored array, for the second stage only, by an object from each stored
/// `pass_uuid` that is being written to its stored pass (the first one, when a uuid is stored twice). The
/// second looks each new pass up in it by its uuid, a constant. One pass over the stored array instead of
/// a scan of it for every new pass: the scan and a `$let` holding the index (which DocumentDB evaluates
/// again at every use) cost more (`bench/put_pipelines.py`). The keys are uuids this write validated,
/// which `$getField` reads whatever they contain.
fn merge_stages(kind: PassKind, new_passes: Vec<RawDocumentBuf>) -> (RawDocumentBuf, Vec<MergePass>) {
    let stored = format!("${}", kind.field());
    let mut uuids = RawArrayBuf::new();
    let mut merged = Vec::with_capacity(new_passes.len());
    for pass in new_passes {
        let uuid = pass.get_str(field::PASS_UUID).unwrap_or_default().to_owned();
        let stored_pass = rawdoc! { "$getField": { "field": { "$literal": uuid.as_str() }, "input": stored.as_str() } };
        merged.push(MergePass { merge: (stored_pass, Literal { value: pass }) });
        uuids.push(uuid);
    }
    let mut unreserved = RawArrayBuf::new();
    let mut carries_reserved = RawArrayBuf::new();
    for name in reserved::PASS_FIELDS {
        unreserved.push(name);
        carries_reserved.push(rawdoc! { "$ne": [{ "$type": format!("$$old.{name}") }, "missing"] });
    }
    let without_reserved = rawdoc! { "$arrayToObject": { "$filter": {
        "input": { "$objectToArray": "$$old" },
        "as": "field",
        "cond": { "$not": [{ "$in": ["$$field.k", unreserved] }] },
    } } };
    let index = rawdoc! { "$arrayToObject": { "$map": {
        // Reversed, so that the first stored pass of a uuid is the one the object keeps.
        "input": { "$reverseArray": { "$filter": {
            // A stored value that is not an array holds no passes to merge (and must not fail the write).
            "input": { "$cond": [{ "$isArray": stored.as_str() }, stored.as_str(), []] },
            "as": "old",
            "cond": { "$in": [format!("$$old.{}", field::PASS_UUID), { "$literal": uuids }] },
        } } },
        "as": "old",
        "in": {
            "k": format!("$$old.{}", field::PASS_UUID),
            "v": { "$cond": [{ "$or": carries_reserved }, without_reserved, "$$old"] },
        },
    } } };
    (index, merged)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::to_raw_document_buf;

    use super::*;

    /// The command as the server receives it: the statement's typed parts serialize to the pipeline
    /// written out by hand here, field for field and in order.
    #[test]
    fn the_command_is_the_guarded_two_stage_pipeline() {
        let user = UserId::new(7).unwrap();
        let expires_at = DateTime::from_millis(1_800_000_000_000);
        let pass = rawdoc! { "pass_uuid": "u-1", "status": "$ACTIVE", "payload": { "a": 1 } };
        let statement = ReplaceStatement::new(user, 1_795_000_000_000, expires_at, vec![(PassKind::Passes4, vec![pass.clone()])]);
        let concern = rawdoc! { "w": "majority" };
        let command = UpdateCommand {
            update: "bytemark_tickets_cache",
            updates: &[&statement],
            ordered: Some(false),
            write_concern: Some(&concern),
            max_time_ms: 250,
        };

        let writable = rawdoc! { "$or": [
            { "$not": [{ "$isNumber": "$timestamp" }] },
            { "$lt": ["$timestamp", 0_i64] },
            { "$gt": ["$timestamp", 9_007_199_254_740_991_i64] },
            { "$lte": ["$timestamp", 1_795_000_000_000_i64] },
        ] };
        let (index, _) = merge_stages(PassKind::Passes4, vec![pass.clone()]);
        let expected = rawdoc! {
            "update": "bytemark_tickets_cache",
            "updates": [{
                "q": { "user_id": 7 },
                "u": [
                    { "$set": { "passes4": { "$cond": [writable.clone(), index, "$passes4"] } } },
                    { "$set": {
                        "_id": { "$ifNull": ["$_id", derived_id(user)] },
                        "timestamp": { "$cond": [writable.clone(), 1_795_000_000_000_i64, "$timestamp"] },
                        "expires_at": { "$cond": [writable.clone(), expires_at, "$expires_at"] },
                        "passes4": { "$cond": [writable, [{ "$mergeObjects": [
                            { "$getField": { "field": { "$literal": "u-1" }, "input": "$passes4" } },
                            { "$literal": pass },
                        ] }], "$passes4"] },
                    } },
                ],
                "upsert": true,
            }],
            "ordered": false,
            "writeConcern": { "w": "majority" },
            "maxTimeMS": 250_i64,
        };
        assert_eq!(to_raw_document_buf(&command).unwrap(), expected);
    }

    /// A single replace is the same filter and pipeline as a `findAndModify` on the document the rule picks,
    /// answering with the stored timestamp before the write; the bulk names that document's `_id` instead.
    #[test]
    fn the_single_replace_is_a_sorted_find_and_modify_and_the_bulk_names_the_document() {
        let user = UserId::new(3_000_000_003).unwrap();
        let expires_at = DateTime::from_millis(1_800_000_000_000);
        let pass = rawdoc! { "pass_uuid": "u-1", "status": "ACTIVE", "payload": { "a": 1 } };
        let mut statement = ReplaceStatement::new(user, 1_795_000_000_000, expires_at, vec![(PassKind::Passes, vec![pass])]);
        let (sort, fields) = (rawdoc! { "_id": 1 }, rawdoc! { "_id": 0, "timestamp": 1 });
        let single = to_raw_document_buf(&ReplaceCommand::new("c", &statement, &sort, &fields, None, 250)).unwrap();
        let in_update = to_raw_document_buf(&UpdateCommand {
            update: "c",
            updates: &[&statement],
            ordered: None,
            write_concern: None,
            max_time_ms: 250,
        })
        .unwrap();
        let statement_sent = in_update.get_array("updates").unwrap().into_iter().next().unwrap().unwrap().as_document().unwrap().to_owned();
        assert_eq!(single.get_str("findAndModify").unwrap(), "c");
        assert_eq!(
            single.get_document("query").unwrap(),
            rawdoc! { "user_id": 3_000_000_003.0 }.as_ref(),
            "a double, as the Node driver writes it"
        );
        assert_eq!(single.get_document("sort").unwrap(), sort.as_ref());
        assert_eq!(single.get_array("update").unwrap(), statement_sent.get_array("u").unwrap(), "the same pipeline");
        assert_eq!((single.get_bool("upsert").unwrap(), single.get_document("fields").unwrap()), (true, fields.as_ref()));

        let id = mongodb::bson::oid::ObjectId::from_bytes([7; 12]);
        statement.target(user, RawBson::ObjectId(id));
        let targeted = to_raw_document_buf(&statement).unwrap();
        assert_eq!(targeted.get_document("q").unwrap(), rawdoc! { "user_id": 3_000_000_003.0, "_id": id }.as_ref());
    }

    /// A push with an `id` appends unless that id is logged; without one it always appends.
    #[test]
    fn the_push_command_appends_unless_the_id_is_logged() {
        let user = UserId::new(7).unwrap();
        let expires_at = DateTime::from_millis(1_800_000_000_000);
        let entry = rawdoc! { "errors": ["$E"], "data": RawBson::Null, "id": "r-1" };
        let (query, sort, fields) = (rawdoc! { "user_id": 7 }, rawdoc! { "_id": 1 }, rawdoc! { "_id": 1 });
        let entries = rawdoc! { "$cond": [{ "$isArray": "$passesLog" }, "$passesLog", []] };
        let appended = rawdoc! { "$slice": [{ "$concatArrays": [entries.clone(), { "$literal": [entry.clone()] }] }, -100_i64] };
        let duplicate =
            rawdoc! { "$in": ["r-1", { "$map": { "input": entries, "as": "e", "in": { "$ifNull": ["$$e.id", RawBson::Null] } } }] };
        for id in [Some("r-1"), None] {
            let stage = PushStage { user, log: "passesLog", entry: entry.clone(), cap: 100, expires_at, id };
            let command = PushCommand {
                collection: "bytemark_tickets_cache",
                query: &query,
                sort: &sort,
                update: [SetStage { set: &stage }],
                upsert: true,
                fields: &fields,
                write_concern: None,
                max_time_ms: 250,
            };
            let set = match id {
                Some(_) => rawdoc! {
                    "_id": { "$ifNull": ["$_id", derived_id(user)] },
                    "passesLog": { "$cond": [duplicate.clone(), "$passesLog", appended.clone()] },
                    "expires_at": { "$cond": [duplicate.clone(), "$expires_at", expires_at] },
                },
                None => {
                    rawdoc! { "_id": { "$ifNull": ["$_id", derived_id(user)] }, "passesLog": appended.clone(), "expires_at": expires_at }
                }
            };
            let expected = rawdoc! {
                "findAndModify": "bytemark_tickets_cache",
                "query": { "user_id": 7 },
                "sort": { "_id": 1 },
                "update": [{ "$set": set }],
                "upsert": true,
                "fields": { "_id": 1 },
                "maxTimeMS": 250_i64,
            };
            assert_eq!(to_raw_document_buf(&command).unwrap(), expected);
        }
    }
}
