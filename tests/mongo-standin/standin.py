#!/usr/bin/env python3
"""MongoDB stand-in: the MongoDB wire protocol (OP_MSG, plus the legacy OP_QUERY handshake) in front of
mongomock, for tests on machines where no mongod can be installed.

It answers the commands the Rust driver sends for what the `domain` crate does. Every command runs under
one lock, so each is atomic, as a single-document operation is in MongoDB. Storage is in memory.

    python standin.py [--host 127.0.0.1] [--port 0] [--exit-with-parent] [--reply-delay-ms N]

prints `LISTENING mongodb://HOST:PORT` once it accepts connections.
"""

import argparse
import datetime
import itertools
import os
import signal
import socketserver
import struct
import sys
import threading
import time

import bson
import bson.errors
from bson.codec_options import CodecOptions
from bson.int64 import Int64
import mongomock
from pymongo import ReturnDocument
import traceback
from mongomock import aggregate as mm_aggregate

OP_REPLY, OP_QUERY, OP_MSG, OP_COMPRESSED = 1, 2004, 2013, 2012
CODEC = CodecOptions(document_class=dict, tz_aware=False)
MAX_WIRE_VERSION = 21  # MongoDB 7.0
HANDSHAKE_COMMANDS = {"hello", "ismaster", "ismaster", "isMaster", "ping", "buildinfo", "buildInfo"}


# --- mongomock gaps -------------------------------------------------------------------------------

def _patch_merge_objects():
    """`$mergeObjects` as an aggregation expression (mongomock 4.3 supports it only in $group).

    MongoDB semantics: documents merged left to right; null or missing arguments are ignored.
    """
    original_parse = mm_aggregate._Parser.parse

    def parse(self, expression):
        if isinstance(expression, dict) and len(expression) == 1 and "$mergeObjects" in expression:
            args = expression["$mergeObjects"]
            if not isinstance(args, list):
                args = [args]
            merged = {}
            for arg in args:
                try:
                    value = self.parse(arg)
                except KeyError:
                    continue
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise mongomock.OperationFailure(
                        "$mergeObjects requires object inputs, but input %r is of type %s" % (value, type(value).__name__),
                        code=40400)
                merged.update(value)
            return merged
        return original_parse(self, expression)

    mm_aggregate._Parser.parse = parse


def _patch_array_elem_at():
    """`$arrayElemAt` past the end yields *missing* in MongoDB; mongomock raises instead. And
    `$reverseArray`, which mongomock 4.3 lacks."""
    original = mm_aggregate._Parser._handle_array_operator

    def handle(self, operator, values):
        if operator == "$reverseArray":
            array = self.parse(values[0] if isinstance(values, list) and len(values) == 1 else values)
            if array is None:
                return None
            if not isinstance(array, list):
                raise mongomock.OperationFailure("The argument to $reverseArray must be an array", code=34435)
            return array[::-1]
        if operator == "$arrayElemAt":
            array = self.parse(values[0])
            index = self.parse(values[1])
            if array is None:
                return None
            if not isinstance(array, list):
                raise mongomock.OperationFailure("$arrayElemAt's first argument must be an array", code=28689)
            if -len(array) <= index < len(array):
                return array[index]
            raise KeyError("$arrayElemAt out of range")
        return original(self, operator, values)

    if "$arrayElemAt" not in mm_aggregate.array_operators:
        mm_aggregate.array_operators.append("$arrayElemAt")
    mm_aggregate._Parser._handle_array_operator = handle


def _patch_not():
    """`{$not: [expr]}` negates expr; mongomock 4.3 negates the (always truthy) list itself."""
    original = mm_aggregate._Parser._handle_boolean_operator

    def handle(self, operator, values):
        if operator == "$not" and isinstance(values, list) and len(values) == 1:
            return not self._parse_to_bool(values[0])
        return original(self, operator, values)

    mm_aggregate._Parser._handle_boolean_operator = handle


def _patch_dotted_projection():
    """An inclusion projection `a.b` over an array keeps only the array's documents, as MongoDB does;
    mongomock fails on any other item (a string in a log array, say)."""
    from mongomock import collection as mm_collection
    original = mm_collection._project_by_spec

    def project(doc, spec, is_include, container):
        if is_include and isinstance(doc, dict):
            trimmed = {key: [item for item in val if isinstance(item, dict)]
                       if isinstance(spec.get(key), dict) and isinstance(val, (list, tuple)) else val
                       for key, val in doc.items()}
            return original(trimmed, spec, is_include, container)
        return original(doc, spec, is_include, container)

    mm_collection._project_by_spec = project


def _patch_type():
    """`$type` as an aggregation expression (mongomock 4.3 knows it only as a query operator)."""
    original_parse = mm_aggregate._Parser.parse

    def type_name(value):
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, Int64):
            return "long"
        if isinstance(value, int):
            return "int" if -2**31 <= value < 2**31 else "long"
        if isinstance(value, float):
            return "double"
        if isinstance(value, str):
            return "string"
        if isinstance(value, dict):
            return "object"
        if isinstance(value, (list, tuple)):
            return "array"
        if isinstance(value, datetime.datetime):
            return "date"
        return "unknown"

    def parse(self, expression):
        if isinstance(expression, dict) and len(expression) == 1 and "$type" in expression:
            argument = expression["$type"]
            if isinstance(argument, list) and len(argument) == 1:
                argument = argument[0]
            try:
                return type_name(original_parse(self, argument))
            except KeyError:
                return "missing"
        return original_parse(self, expression)

    mm_aggregate._Parser.parse = parse


def _patch_get_field():
    """`$getField` (MongoDB 5.0; mongomock 4.3 lacks it): the named field of an object, read by its
    whole name (dots and a leading `$` included); missing when the input lacks it or is missing or null."""
    original_parse = mm_aggregate._Parser.parse

    def parse(self, expression):
        if isinstance(expression, dict) and len(expression) == 1 and "$getField" in expression:
            argument = expression["$getField"]
            if isinstance(argument, dict) and "field" in argument:
                name, source = argument["field"], argument.get("input", "$$CURRENT")
            else:
                name, source = argument, "$$CURRENT"
            if isinstance(name, dict) and set(name) == {"$literal"}:
                name = name["$literal"]
            if not isinstance(name, str):
                raise mongomock.OperationFailure("$getField requires 'field' to evaluate to type String", code=5654602)
            value = self.parse(source)
            if value is None:
                return None
            if not isinstance(value, dict):
                raise mongomock.OperationFailure("$getField requires 'input' to evaluate to type Object", code=3041705)
            if name not in value:
                raise KeyError(name)
            return value[name]
        return original_parse(self, expression)

    mm_aggregate._Parser.parse = parse


def _patch_in():
    """`{$in: [value, array]}` with a missing value (a field of a non-document, say) is false in
    MongoDB; mongomock 4.3 lets the missing value fail the whole expression."""
    original = mm_aggregate._Parser._handle_set_operator

    def handle(self, operator, values):
        if operator == "$in":
            expression, array = values
            try:
                value = self.parse(expression)
            except KeyError:
                return False
            return value in self.parse(array)
        return original(self, operator, values)

    mm_aggregate._Parser._handle_set_operator = handle


def _patch_substr_bytes():
    """`$substrBytes` (mongomock 4.3 knows only the deprecated `$substr`, its alias)."""
    original_parse = mm_aggregate._Parser.parse

    def parse(self, expression):
        if isinstance(expression, dict) and len(expression) == 1 and "$substrBytes" in expression:
            return self.parse({"$substr": expression["$substrBytes"]})
        return original_parse(self, expression)

    mm_aggregate._Parser.parse = parse


def _patch_array_literals():
    """An array in an expression is an array of expressions, each evaluated (a missing value becomes
    null), as MongoDB does; mongomock 4.3 returns the array as it was written."""
    original_parse = mm_aggregate._Parser.parse

    def parse(self, expression):
        if isinstance(expression, list):
            values = []
            for item in expression:
                try:
                    values.append(self.parse(item))
                except KeyError:
                    values.append(None)
            return values
        return original_parse(self, expression)

    mm_aggregate._Parser.parse = parse


_patch_merge_objects()
_patch_get_field()
_patch_array_elem_at()
_patch_not()
_patch_dotted_projection()
_patch_type()
_patch_in()
_patch_substr_bytes()
_patch_array_literals()


# --- server state ---------------------------------------------------------------------------------

class State:
    def __init__(self, reply_delay_ms):
        self.client = mongomock.MongoClient()
        self.lock = threading.RLock()
        self.cursors = {}
        self.cursor_ids = itertools.count(1000)
        self.connection_ids = itertools.count(1)
        self.reply_delay_ms = reply_delay_ms
        self.fail_point = None  # the `failCommand` fail point, see cmd_configure_fail_point


class CommandError(Exception):
    def __init__(self, message, code=8, code_name="UnknownError"):
        super().__init__(message)
        self.code = code
        self.code_name = code_name


CODE_NAMES = {2: "BadValue", 11000: "DuplicateKey", 26: "NamespaceNotFound", 59: "CommandNotFound",
              238: "NotImplemented", 8: "UnknownError", 40400: "Location40400", 28689: "Location28689"}


def error_reply(message, code, code_name=None):
    return {"ok": 0.0, "errmsg": str(message), "code": code, "codeName": code_name or CODE_NAMES.get(code, "Location%d" % code)}


def duplicate_key_error(exc):
    return {"code": 11000, "errmsg": "E11000 duplicate key error: %s" % exc}


# --- commands -------------------------------------------------------------------------------------

def first_key(cmd):
    return next(iter(cmd))


def collection(state, db, cmd):
    return state.client[db][cmd[first_key(cmd)]]


def make_cursor(state, db, coll_name, docs, batch_size, single_batch=False):
    docs = list(docs)
    ns = "%s.%s" % (db, coll_name)
    if batch_size is None:
        batch_size = 101
    first, rest = docs[:batch_size] if batch_size else docs, docs[batch_size:] if batch_size else []
    cursor_id = 0
    if rest and not single_batch:
        cursor_id = next(state.cursor_ids)
        state.cursors[cursor_id] = (ns, rest)
    return {"cursor": {"firstBatch": first, "id": Int64(cursor_id), "ns": ns}, "ok": 1.0}


def cmd_hello(state, db, cmd, conn):
    return {
        "helloOk": True, "ismaster": True, "isWritablePrimary": True,
        "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
        "localTime": datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None),
        "logicalSessionTimeoutMinutes": 30, "connectionId": conn.connection_id,
        "minWireVersion": 0, "maxWireVersion": MAX_WIRE_VERSION, "readOnly": False, "ok": 1.0,
    }


def cmd_ok(state, db, cmd, conn):
    return {"ok": 1.0}


def cmd_build_info(state, db, cmd, conn):
    return {"version": "7.0.0-standin", "versionArray": [7, 0, 0, 0], "maxBsonObjectSize": 16 * 1024 * 1024, "ok": 1.0}


def has_expressions(projection):
    """Whether a find projection computes a field (`{"a": {"$filter": ...}}`), as MongoDB 4.4+ allows."""
    return any(isinstance(v, dict) and any(str(k).startswith("$") for k in v) for v in (projection or {}).values())


def cmd_find(state, db, cmd, conn):
    coll = collection(state, db, cmd)
    projection = cmd.get("projection") or None
    if has_expressions(projection):
        # mongomock's find projects only by inclusion; an aggregation computes the fields.
        pipeline = [{"$match": cmd.get("filter") or {}}]
        if cmd.get("sort"):
            pipeline.append({"$sort": cmd["sort"]})
        if cmd.get("skip"):
            pipeline.append({"$skip": int(cmd["skip"])})
        if cmd.get("limit"):
            pipeline.append({"$limit": abs(int(cmd["limit"]))})
        pipeline.append({"$project": projection})
        docs = list(coll.aggregate(pipeline))
        batch = cmd.get("batchSize")
        single = bool(cmd.get("singleBatch")) or int(cmd.get("limit") or 0) < 0
        return make_cursor(state, db, cmd[first_key(cmd)], docs, int(batch) if batch is not None else None, single)
    cursor = coll.find(cmd.get("filter") or {}, projection=projection)
    if cmd.get("sort"):
        cursor = cursor.sort(list(cmd["sort"].items()))
    if cmd.get("skip"):
        cursor = cursor.skip(int(cmd["skip"]))
    limit = int(cmd.get("limit") or 0)
    if limit:
        cursor = cursor.limit(abs(limit))
    single = bool(cmd.get("singleBatch")) or limit < 0
    batch = cmd.get("batchSize")
    return make_cursor(state, db, cmd[first_key(cmd)], cursor, int(batch) if batch is not None else None, single)


def cmd_get_more(state, db, cmd, conn):
    cursor_id = int(cmd["getMore"])
    if cursor_id not in state.cursors:
        return error_reply("cursor id %d not found" % cursor_id, 43, "CursorNotFound")
    ns, docs = state.cursors.pop(cursor_id)
    batch = int(cmd.get("batchSize") or 0) or len(docs)
    batch_docs, rest = docs[:batch], docs[batch:]
    next_id = 0
    if rest:
        next_id = cursor_id
        state.cursors[cursor_id] = (ns, rest)
    return {"cursor": {"nextBatch": batch_docs, "id": Int64(next_id), "ns": ns}, "ok": 1.0}


def cmd_kill_cursors(state, db, cmd, conn):
    killed = []
    for cursor_id in cmd.get("cursors", []):
        if state.cursors.pop(int(cursor_id), None) is not None:
            killed.append(cursor_id)
    return {"cursorsKilled": killed, "cursorsNotFound": [], "cursorsAlive": [], "cursorsUnknown": [], "ok": 1.0}


def write_error(index, exc):
    if isinstance(exc, mongomock.DuplicateKeyError):
        return dict(index=index, **duplicate_key_error(exc))
    code = getattr(exc, "code", None) or 2
    return {"index": index, "code": code, "errmsg": str(exc)}


def cmd_insert(state, db, cmd, conn):
    coll = collection(state, db, cmd)
    n, errors = 0, []
    for index, doc in enumerate(cmd.get("documents", [])):
        try:
            coll.insert_one(doc)
            n += 1
        except (mongomock.WriteError, mongomock.OperationFailure) as exc:
            errors.append(write_error(index, exc))
            if cmd.get("ordered", True):
                break
    reply = {"n": n, "ok": 1.0}
    if errors:
        reply["writeErrors"] = errors
    return reply


def is_replacement(update):
    return isinstance(update, dict) and not any(k.startswith("$") for k in update)


def cmd_update(state, db, cmd, conn):
    coll = collection(state, db, cmd)
    n = modified = 0
    upserted, errors = [], []
    for index, spec in enumerate(cmd.get("updates", [])):
        q, u = spec.get("q") or {}, spec.get("u")
        upsert, multi = bool(spec.get("upsert")), bool(spec.get("multi"))
        kwargs = {"upsert": upsert}
        if spec.get("arrayFilters"):
            kwargs["array_filters"] = spec["arrayFilters"]
        try:
            if is_replacement(u):
                result = coll.replace_one(q, u, upsert=upsert)
            elif multi:
                result = coll.update_many(q, u, **kwargs)
            else:
                result = coll.update_one(q, u, **kwargs)
        except (mongomock.WriteError, mongomock.OperationFailure) as exc:
            errors.append(write_error(index, exc))
            if cmd.get("ordered", True):
                break
            continue
        if result.upserted_id is not None:
            n += 1
            upserted.append({"index": index, "_id": result.upserted_id})
        else:
            n += result.matched_count
            modified += result.modified_count
    reply = {"n": n, "nModified": modified, "ok": 1.0}
    if upserted:
        reply["upserted"] = upserted
    if errors:
        reply["writeErrors"] = errors
    return reply


def cmd_delete(state, db, cmd, conn):
    coll = collection(state, db, cmd)
    n = 0
    for spec in cmd.get("deletes", []):
        q = spec.get("q") or {}
        if int(spec.get("limit", 0)) == 1:
            n += coll.delete_one(q).deleted_count
        else:
            n += coll.delete_many(q).deleted_count
    return {"n": n, "ok": 1.0}


def cmd_find_and_modify(state, db, cmd, conn):
    coll = collection(state, db, cmd)
    query = cmd.get("query") or {}
    sort = list(cmd["sort"].items()) if cmd.get("sort") else None
    fields = cmd.get("fields") or None
    new = bool(cmd.get("new"))
    upsert = bool(cmd.get("upsert"))
    existing = coll.find_one(query, sort=sort)
    if existing is not None:
        # mongomock aims the write at its own `find_one` with `fields`, which loses the sorted document's
        # `_id` when `fields` leaves it out, and then writes the first match: name the document instead.
        query = {"_id": existing["_id"]}
    if cmd.get("remove"):
        value = coll.find_one_and_delete(query, projection=fields, sort=sort)
        return {"lastErrorObject": {"n": 1 if value is not None else 0}, "value": value, "ok": 1.0}
    update = cmd.get("update")
    if update is None:
        return error_reply("Either an update or remove=true must be specified", 9, "FailedToParse")
    return_document = ReturnDocument.AFTER if new else ReturnDocument.BEFORE
    try:
        if is_replacement(update):
            value = coll.find_one_and_replace(query, update, projection=fields, sort=sort, upsert=upsert, return_document=return_document)
        else:
            value = coll.find_one_and_update(query, update, projection=fields, sort=sort, upsert=upsert, return_document=return_document)
    except mongomock.DuplicateKeyError as exc:
        return error_reply(duplicate_key_error(exc)["errmsg"], 11000, "DuplicateKey")
    last_error = {"n": 1 if (existing is not None or upsert) else 0, "updatedExisting": existing is not None}
    if existing is None and upsert:
        inserted = coll.find_one(query, sort=sort)
        if inserted is not None:
            last_error["upserted"] = inserted["_id"]
    return {"lastErrorObject": last_error, "value": value, "ok": 1.0}


def cmd_aggregate(state, db, cmd, conn):
    coll = collection(state, db, cmd)
    docs = list(coll.aggregate(cmd.get("pipeline", [])))
    batch = (cmd.get("cursor") or {}).get("batchSize")
    return make_cursor(state, db, cmd[first_key(cmd)], docs, int(batch) if batch is not None else None)


def cmd_count(state, db, cmd, conn):
    coll = collection(state, db, cmd)
    kwargs = {}
    if cmd.get("limit"):
        kwargs["limit"] = int(cmd["limit"])
    if cmd.get("skip"):
        kwargs["skip"] = int(cmd["skip"])
    return {"n": coll.count_documents(cmd.get("query") or {}, **kwargs), "ok": 1.0}


def cmd_distinct(state, db, cmd, conn):
    coll = collection(state, db, cmd)
    return {"values": coll.distinct(cmd["key"], cmd.get("query") or {}), "ok": 1.0}


def cmd_create(state, db, cmd, conn):
    name = cmd[first_key(cmd)]
    if name in state.client[db].list_collection_names():
        return error_reply("Collection %s.%s already exists." % (db, name), 48, "NamespaceExists")
    state.client[db].create_collection(name)
    return {"ok": 1.0}


INDEX_OPTIONS = ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression")


def index_conflict(existing, name, key, options):
    """MongoDB's error for a requested index that clashes with an existing one, else None.

    With the key, `unique`, `sparse` and `partialFilterExpression` make an index what it is; a TTL is an
    option of it. Same name but another index: 86. Same index under that name with another TTL, or under
    another name: 85 (mongomock answers 2, or creates the second one).
    """
    def signature(spec):
        return (bool(spec.get("unique")), bool(spec.get("sparse")), spec.get("partialFilterExpression"))

    for existing_name, info in existing.items():
        same_index = list(info["key"]) == key and signature(info) == signature(options)
        same_ttl = info.get("expireAfterSeconds") == options.get("expireAfterSeconds")
        if existing_name == name and not same_index:
            return error_reply("An existing index has the same name as the requested index but a different key "
                               "or kind: %s" % name, 86, "IndexKeySpecsConflict")
        if existing_name == name and not same_ttl:
            return error_reply("An equivalent index already exists with the same name but different options: %s"
                               % name, 85, "IndexOptionsConflict")
        if existing_name != name and same_index and same_ttl:
            return error_reply("Index already exists with a different name: %s" % existing_name, 85, "IndexOptionsConflict")
    return None


def cmd_create_indexes(state, db, cmd, conn):
    name = cmd[first_key(cmd)]
    created_collection = name not in state.client[db].list_collection_names()
    coll = state.client[db][name]
    before = len(coll.index_information()) if not created_collection else 1
    for spec in cmd.get("indexes", []):
        options = {k: spec[k] for k in INDEX_OPTIONS if k in spec}
        key = list(spec["key"].items())
        index_name = spec.get("name") or "_".join("%s_%s" % (field, direction) for field, direction in key)
        conflict = index_conflict(coll.index_information(), index_name, key, options)
        if conflict:
            return conflict
        try:
            coll.create_index(key, name=index_name, **options)
        except mongomock.DuplicateKeyError as exc:
            return error_reply(duplicate_key_error(exc)["errmsg"], 11000, "DuplicateKey")
    after = len(coll.index_information())
    return {"createdCollectionAutomatically": created_collection, "numIndexesBefore": before, "numIndexesAfter": after, "ok": 1.0}


def cmd_list_indexes(state, db, cmd, conn):
    name = cmd[first_key(cmd)]
    if name not in state.client[db].list_collection_names():
        return error_reply("ns does not exist: %s.%s" % (db, name), 26, "NamespaceNotFound")
    specs = []
    for index_name, info in state.client[db][name].index_information().items():
        spec = {"v": 2, "key": dict(info["key"]), "name": index_name}
        for option in INDEX_OPTIONS:
            if option in info:
                spec[option] = info[option]
        specs.append(spec)
    return make_cursor(state, db, name, specs, None)


def cmd_drop_indexes(state, db, cmd, conn):
    coll = collection(state, db, cmd)
    index = cmd.get("index")
    if index == "*":
        coll.drop_indexes()
    elif isinstance(index, dict):
        for index_name, info in coll.index_information().items():
            if dict(info["key"]) == index:
                coll.drop_index(index_name)
    else:
        coll.drop_index(index)
    return {"ok": 1.0}


def cmd_drop(state, db, cmd, conn):
    name = cmd[first_key(cmd)]
    if name not in state.client[db].list_collection_names():
        return error_reply("ns not found", 26, "NamespaceNotFound")
    state.client[db].drop_collection(name)
    return {"ok": 1.0}


def cmd_drop_database(state, db, cmd, conn):
    state.client.drop_database(db)
    return {"dropped": db, "ok": 1.0}


def cmd_list_collections(state, db, cmd, conn):
    names = state.client[db].list_collection_names()
    only = (cmd.get("filter") or {}).get("name")
    infos = [{"name": n, "type": "collection", "options": {}, "info": {"readOnly": False}} for n in names if only in (None, n)]
    if cmd.get("nameOnly"):
        infos = [{"name": i["name"], "type": "collection"} for i in infos]
    return make_cursor(state, db, "$cmd.listCollections", infos, None)


def cmd_list_databases(state, db, cmd, conn):
    names = state.client.list_database_names()
    return {"databases": [{"name": n, "sizeOnDisk": 0, "empty": False} for n in names], "totalSize": 0, "ok": 1.0}


def cmd_set_delay(state, db, cmd, conn):
    state.reply_delay_ms = int(cmd["standinSetDelay"])
    return {"ok": 1.0, "replyDelayMs": state.reply_delay_ms}


def cmd_configure_fail_point(state, db, cmd, conn):
    """MongoDB's `failCommand` fail point (a subset): `mode` is "alwaysOn", "off" or {"times": n};
    `data` names `failCommands` and one of `errorCode` (with optional `errorLabels`),
    `closeConnection: true` or `writeConcernError` (the command runs; its reply carries that error).
    Stand-in extension: `standinAfterCommand: true` runs the command first
    and then fails it (or closes the connection without a reply), as when a reply is lost."""
    if cmd["configureFailPoint"] != "failCommand":
        return error_reply("only the failCommand fail point is supported", 2)
    mode, data = cmd.get("mode"), cmd.get("data") or {}
    if mode == "off":
        state.fail_point = None
        return {"ok": 1.0}
    times = None if mode == "alwaysOn" else int(mode["times"])
    state.fail_point = {"times": times, "commands": set(data.get("failCommands", [])), "code": data.get("errorCode"),
                        "labels": list(data.get("errorLabels", [])), "close": bool(data.get("closeConnection")),
                        "after": bool(data.get("standinAfterCommand")), "write_concern": data.get("writeConcernError")}
    return {"ok": 1.0}


def take_fail_point(state, name):
    """The fail point's action for this command, counting down `times`; None when it does not apply."""
    with state.lock:
        point = state.fail_point
        if point is None or name not in point["commands"]:
            return None
        if point["times"] is not None:
            point["times"] -= 1
            if point["times"] <= 0:
                state.fail_point = None
        return point


def fail_point_reply(point):
    reply = error_reply("failCommand fail point", point["code"] or 8)
    if point["labels"]:
        reply["errorLabels"] = point["labels"]
    return reply


COMMANDS = {
    "hello": cmd_hello, "isMaster": cmd_hello, "ismaster": cmd_hello,
    "ping": cmd_ok, "buildInfo": cmd_build_info, "buildinfo": cmd_build_info,
    "getParameter": cmd_ok, "getCmdLineOpts": cmd_ok, "getFreeMonitoringStatus": cmd_ok,
    "endSessions": cmd_ok, "killSessions": cmd_ok, "killAllSessions": cmd_ok, "startSession": cmd_ok,
    "find": cmd_find, "getMore": cmd_get_more, "killCursors": cmd_kill_cursors,
    "insert": cmd_insert, "update": cmd_update, "delete": cmd_delete,
    "findAndModify": cmd_find_and_modify, "findandmodify": cmd_find_and_modify,
    "aggregate": cmd_aggregate, "count": cmd_count, "distinct": cmd_distinct,
    "create": cmd_create, "createIndexes": cmd_create_indexes, "listIndexes": cmd_list_indexes,
    "dropIndexes": cmd_drop_indexes, "deleteIndexes": cmd_drop_indexes,
    "drop": cmd_drop, "dropDatabase": cmd_drop_database,
    "listCollections": cmd_list_collections, "listDatabases": cmd_list_databases,
    "standinSetDelay": cmd_set_delay,
    "configureFailPoint": cmd_configure_fail_point,
}


def run_command(state, db, cmd, conn):
    name = first_key(cmd) if cmd else ""
    handler = COMMANDS.get(name)
    if handler is None:
        return error_reply("no such command: '%s'" % name, 59, "CommandNotFound")
    try:
        with state.lock:
            return handler(state, db, cmd, conn)
    except mongomock.DuplicateKeyError as exc:
        return error_reply(duplicate_key_error(exc)["errmsg"], 11000, "DuplicateKey")
    except mongomock.OperationFailure as exc:
        code = getattr(exc, "code", None) or 2
        return error_reply(exc, code)
    except NotImplementedError as exc:
        return error_reply("not supported by the stand-in (mongomock): %s" % exc, 238, "NotImplemented")
    except (KeyError, TypeError, ValueError) as exc:
        return error_reply("bad command %s: %r" % (name, exc), 9, "FailedToParse")
    except Exception as exc:  # a stand-in bug: answer like a server error instead of dropping the connection
        traceback.print_exc()
        return error_reply("stand-in internal error in %s: %r" % (name, exc), 1, "InternalError")


# --- wire protocol --------------------------------------------------------------------------------

def read_exact(sock_file, n):
    data = sock_file.read(n)
    if data is None or len(data) < n:
        raise EOFError
    return data


def parse_op_msg(body):
    flags = struct.unpack_from("<I", body, 0)[0]
    end = len(body) - (4 if flags & 1 else 0)
    pos = 4
    command = None
    sequences = {}
    while pos < end:
        kind = body[pos]
        pos += 1
        if kind == 0:
            size = struct.unpack_from("<i", body, pos)[0]
            command = bson.decode(body[pos:pos + size], codec_options=CODEC)
            pos += size
        elif kind == 1:
            size = struct.unpack_from("<i", body, pos)[0]
            section_end = pos + size
            pos += 4
            name_end = body.index(b"\x00", pos)
            identifier = body[pos:name_end].decode()
            pos = name_end + 1
            docs = []
            while pos < section_end:
                doc_size = struct.unpack_from("<i", body, pos)[0]
                docs.append(bson.decode(body[pos:pos + doc_size], codec_options=CODEC))
                pos += doc_size
            sequences[identifier] = docs
        else:
            raise ValueError("unknown OP_MSG section kind %d" % kind)
    for identifier, docs in sequences.items():
        command[identifier] = docs
    return flags, command


def encode_op_msg(request_id, response_to, reply):
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(reply)
    return struct.pack("<iiii", 16 + len(payload), request_id, response_to, OP_MSG) + payload


def encode_op_reply(request_id, response_to, reply):
    doc = bson.encode(reply)
    payload = struct.pack("<iqii", 0, 0, 0, 1) + doc
    return struct.pack("<iiii", 16 + len(payload), request_id, response_to, OP_REPLY) + payload


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        state = self.server.state
        self.connection_id = next(state.connection_ids)
        request_ids = itertools.count(1)
        try:
            while True:
                header = read_exact(self.rfile, 16)
                length, request_id, _, opcode = struct.unpack("<iiii", header)
                body = read_exact(self.rfile, length - 16)
                if opcode == OP_MSG:
                    try:
                        flags, cmd = parse_op_msg(body)
                    except (bson.errors.InvalidBSON, RecursionError) as exc:
                        # What a server says of bytes it cannot read; the connection stays usable.
                        reply = error_reply("invalid BSON: %s" % exc, 22, "InvalidBSON")
                        self.wfile.write(encode_op_msg(next(request_ids), request_id, reply))
                        self.wfile.flush()
                        continue
                    db = cmd.pop("$db", "admin")
                    for meta in ("lsid", "$clusterTime", "$readPreference", "txnNumber", "autocommit", "startTransaction"):
                        cmd.pop(meta, None)
                    point = take_fail_point(state, first_key(cmd)) if cmd else None
                    if point is None or point["after"] or point["write_concern"]:
                        reply = run_command(state, db, cmd, self)
                    if point is not None:
                        if point["close"]:
                            return  # the connection closes without a reply
                        if point["write_concern"]:
                            reply = dict(reply, writeConcernError=point["write_concern"])
                        else:
                            reply = fail_point_reply(point)
                    self.delay(cmd)
                    if flags & 2:  # moreToCome: the client expects no reply
                        continue
                    self.wfile.write(encode_op_msg(next(request_ids), request_id, reply))
                elif opcode == OP_QUERY:
                    pos = 4
                    name_end = body.index(b"\x00", pos)
                    full_name = body[pos:name_end].decode()
                    pos = name_end + 1 + 8
                    size = struct.unpack_from("<i", body, pos)[0]
                    query = bson.decode(body[pos:pos + size], codec_options=CODEC)
                    if "$query" in query:
                        query = query["$query"]
                    reply = run_command(state, full_name.split(".")[0], query, self)
                    self.wfile.write(encode_op_reply(next(request_ids), request_id, reply))
                else:
                    reply = error_reply("opcode %d is not supported" % opcode, 238, "NotImplemented")
                    self.wfile.write(encode_op_msg(next(request_ids), request_id, reply))
                self.wfile.flush()
        except (EOFError, ConnectionError, OSError):
            return

    def delay(self, cmd):
        delay = self.server.state.reply_delay_ms
        if delay and cmd and first_key(cmd) not in HANDSHAKE_COMMANDS and first_key(cmd) != "standinSetDelay":
            time.sleep(delay / 1000.0)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def watch_parent():
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-with-parent", action="store_true")
    parser.add_argument("--reply-delay-ms", type=int, default=int(os.environ.get("STANDIN_REPLY_DELAY_MS", "0")))
    args = parser.parse_args(argv)

    # Documents as deep as real engines store (DocumentDB keeps 10,000 levels): BSON decoding, mongomock's
    # copies and encoding all recurse, so connection threads get a deep stack and Python a high limit.
    threading.stack_size(512 * 1024 * 1024)
    sys.setrecursionlimit(200_000)
    server = Server((args.host, args.port), Handler)
    server.state = State(args.reply_delay_ms)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    if args.exit_with_parent:
        threading.Thread(target=watch_parent, daemon=True).start()
    host, port = server.server_address[:2]
    print("LISTENING mongodb://%s:%d" % (host, port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
