"""The stand-in's own tests, driven by the real pymongo client over the wire protocol."""

import itertools
import os
import subprocess
import sys
import threading
import time

import socket
import struct

import bson
import pytest
from bson.int64 import Int64
from pymongo import MongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "standin.py")
_names = itertools.count()


def start(*args):
    proc = subprocess.Popen([sys.executable, SCRIPT, "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("LISTENING mongodb://"), line
    return proc, line.split(" ", 1)[1]


@pytest.fixture(scope="module")
def server():
    proc, uri = start()
    yield uri
    proc.kill()
    proc.wait()


@pytest.fixture
def db(server):
    client = MongoClient(server + "/?directConnection=true", serverSelectionTimeoutMS=5000)
    yield client["t%d" % next(_names)]
    client.close()


def test_handshake_ping_and_build_info(db):
    assert db.client.admin.command("ping")["ok"] == 1.0
    assert db.client.admin.command("buildInfo")["version"].startswith("7.0")
    hello = db.client.admin.command("hello")
    assert hello["isWritablePrimary"] and hello["maxWireVersion"] >= 17


def test_find_projection_and_get_more(db):
    db.c.insert_many([{"i": i, "a": {"b": i}, "log": [1, 2]} for i in range(5)])
    docs = list(db.c.find({}, {"_id": 0, "i": 1, "a.b": 1}, batch_size=2).sort("i", -1))
    assert [d["i"] for d in docs] == [4, 3, 2, 1, 0]
    assert docs[0] == {"i": 4, "a": {"b": 4}}
    excluded = db.c.find_one({"i": 3}, {"log": 0, "_id": 0})
    assert excluded == {"i": 3, "a": {"b": 3}}
    assert [d["i"] for d in db.c.find({"i": {"$gte": 1}}).skip(1).limit(2)] == [2, 3]


def test_types_and_key_order_round_trip(db):
    doc = {"z": 1, "a": Int64(2), "m": 1.5, "big": Int64(3_000_000_000), "nested": {"y": 1, "x": 2}}
    db.c.insert_one(dict(doc))
    back = db.c.find_one({}, {"_id": 0})
    assert list(back) == ["z", "a", "m", "big", "nested"]
    assert type(back["a"]) is Int64 and type(back["z"]) is int and type(back["m"]) is float
    assert list(back["nested"]) == ["y", "x"]


def test_upsert_push_each_slice(db):
    for i in range(7):
        db.c.update_one({"user_id": 1}, {"$push": {"log": {"$each": [{"n": i}], "$slice": -3}}}, upsert=True)
    assert [e["n"] for e in db.c.find_one({"user_id": 1})["log"]] == [4, 5, 6]
    assert db.c.count_documents({}) == 1


def test_pipeline_update_merges_objects_and_upserts(db):
    db.c.insert_one({"user_id": 1, "timestamp": 5.0, "region": "nyc", "passes": [{"pass_uuid": "a", "vendor_ref": "X", "status": "OLD"}]})
    new = [{"pass_uuid": "a", "status": "NEW", "payload": {"k": "$notapath"}}, {"pass_uuid": "b", "status": "B"}]
    writable = {"$lte": [{"$ifNull": ["$timestamp", 0]}, 10]}
    merge = {"$map": {"input": {"$literal": new}, "as": "new", "in": {"$mergeObjects": [
        {"$arrayElemAt": [{"$filter": {"input": {"$ifNull": ["$passes", []]}, "as": "old",
                                        "cond": {"$eq": ["$$old.pass_uuid", "$$new.pass_uuid"]}}}, 0]},
        "$$new"]}}}
    pipeline = [{"$set": {"timestamp": {"$cond": [writable, 10, "$timestamp"]}, "passes": {"$cond": [writable, merge, "$passes"]}}}]
    after = db.c.find_one_and_update({"user_id": 1}, pipeline, upsert=True, return_document=ReturnDocument.AFTER)
    assert after["timestamp"] == 10 and after["region"] == "nyc"
    assert after["passes"][0] == {"pass_uuid": "a", "vendor_ref": "X", "status": "NEW", "payload": {"k": "$notapath"}}
    assert after["passes"][1] == {"pass_uuid": "b", "status": "B"}
    # A missing document: seeded from the filter's equality fields, then the pipeline runs.
    created = db.c.find_one_and_update({"user_id": 2}, pipeline, upsert=True, return_document=ReturnDocument.AFTER)
    assert created["user_id"] == 2 and created["timestamp"] == 10 and len(created["passes"]) == 2
    # An older write leaves everything as it was.
    stale = [{"$set": {"timestamp": {"$cond": [{"$lte": ["$timestamp", 3]}, 3, "$timestamp"]}}}]
    assert db.c.find_one_and_update({"user_id": 1}, stale, return_document=ReturnDocument.AFTER)["timestamp"] == 10


def test_not_negates_its_one_argument(db):
    db.c.insert_one({"k": "a", "o": {"a": 1, "integrity": "verified"}})
    kept = {"$filter": {"input": {"$objectToArray": "$o"}, "as": "f", "cond": {"$not": [{"$in": ["$$f.k", ["integrity"]]}]}}}
    projected = list(db.c.aggregate([{"$project": {"_id": 0, "t": {"$not": [False]}, "f": {"$not": [{"$eq": ["$k", "a"]}]},
                                                   "o": {"$arrayToObject": kept}}}]))
    assert projected == [{"t": True, "f": False, "o": {"a": 1}}]


def test_expressions_the_pass_merge_uses(db):
    """$getField by a whole name, $reverseArray, arrays of expressions, and $in of a missing value, as
    the replace's two-stage pipeline uses them (MongoDB semantics; mongomock 4.3 lacks or differs)."""
    db.t.insert_one({"user_id": 1, "passes": ["junk", {"pass_uuid": "a.b", "v": 1}, {"pass_uuid": "a.b", "v": 2}]})
    index = {"$arrayToObject": {"$map": {
        "input": {"$reverseArray": {"$filter": {"input": "$passes", "as": "o", "cond": {"$in": ["$$o.pass_uuid", ["a.b"]]}}}},
        "as": "o", "in": {"k": "$$o.pass_uuid", "v": "$$o"}}}}
    db.t.update_one({"user_id": 1}, [
        {"$set": {"passes": index}},
        {"$set": {"passes": [
            {"$mergeObjects": [{"$getField": {"field": {"$literal": "a.b"}, "input": "$passes"}}, {"w": 3}]},
            {"$mergeObjects": [{"$getField": {"field": {"$literal": "$x"}, "input": "$passes"}}, {"w": 4}]},
            "$missing",
        ]}},
    ])
    assert db.t.find_one({"user_id": 1}, {"_id": 0})["passes"] == [{"pass_uuid": "a.b", "v": 1, "w": 3}, {"w": 4}, None]


def test_unreadable_bson_is_refused_and_the_connection_survives(server):
    port = int(server.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port)) as conn:
        # OP_MSG whose one document holds a string that is not UTF-8.
        doc = bson.encode({"insert": "c", "$db": "d", "s": "\x11\x12"}).replace(b"\x11\x12", b"\xff\xfe")
        body = struct.pack("<I", 0) + b"\x00" + doc
        conn.sendall(struct.pack("<iiii", 16 + len(body), 7, 0, 2013) + body)
        header = conn.recv(16)
        length = struct.unpack("<i", header[:4])[0]
        reply = b""
        while len(reply) < length - 16:
            reply += conn.recv(length - 16 - len(reply))
        answer = bson.decode(reply[5:])
        assert (answer["ok"], answer["code"]) == (0.0, 22)
        # The same connection still answers.
        ping = bson.encode({"ping": 1, "$db": "admin"})
        body = struct.pack("<I", 0) + b"\x00" + ping
        conn.sendall(struct.pack("<iiii", 16 + len(body), 8, 0, 2013) + body)
        assert struct.unpack("<iiii", conn.recv(16))[3] == 2013


def test_find_and_modify_before_after_and_remove(db):
    db.c.insert_one({"k": 1, "v": 1})
    before = db.c.find_one_and_update({"k": 1}, {"$inc": {"v": 1}})
    assert before["v"] == 1
    after = db.c.find_one_and_update({"k": 1}, {"$inc": {"v": 1}}, return_document=ReturnDocument.AFTER)
    assert after["v"] == 3
    assert db.c.find_one_and_update({"k": 9}, {"$set": {"v": 0}}, upsert=True, return_document=ReturnDocument.AFTER)["k"] == 9
    assert db.c.find_one_and_delete({"k": 9})["v"] == 0
    assert db.c.count_documents({"k": 9}) == 0


def test_find_and_modify_writes_the_sorted_document_whatever_it_returns(db):
    # Two documents match; `sort` picks one, and `fields` without `_id` must not make another one the target.
    db.t.insert_many([{"_id": 2, "user_id": 7.0}, {"_id": 1, "user_id": Int64(7)}])
    reply = db.command({"findAndModify": "t", "query": {"user_id": 7}, "sort": {"_id": 1},
                        "update": [{"$set": {"w": 1}}], "fields": {"_id": 0, "user_id": 1}})
    assert reply["value"] == {"user_id": 7}
    assert [d.get("w") for d in db.t.find().sort("_id", 1)] == [1, None]


def test_aggregate_group(db):
    db.c.insert_many([{"log": [{"errors": ["E1", {"code": "E2"}]}]}, {"log": [{"errors": [{"code": "E2"}]}]}])
    rows = list(db.c.aggregate([
        {"$project": {"_id": 0, "entry": "$log"}}, {"$unwind": "$entry"}, {"$unwind": "$entry.errors"},
        {"$group": {"_id": {"$ifNull": ["$entry.errors.code", "$entry.errors"]}, "n": {"$sum": 1}}},
        {"$sort": {"_id": 1}}]))
    assert rows == [{"_id": "E1", "n": 1}, {"_id": "E2", "n": 2}]


def test_indexes_ttl_and_duplicate_keys(db):
    db.c.create_index("user_id", unique=True)
    db.c.create_index("expires_at", expireAfterSeconds=0)
    specs = {i["name"]: i for i in db.c.list_indexes()}
    assert specs["user_id_1"]["unique"] is True
    assert specs["expires_at_1"]["expireAfterSeconds"] == 0
    db.c.insert_one({"user_id": 1})
    with pytest.raises(DuplicateKeyError) as insert_error:
        db.c.insert_one({"user_id": 1.0})  # numerically equal across BSON types
    assert insert_error.value.code == 11000
    db.c.insert_one({"user_id": 2, "tag": "x"})
    with pytest.raises(DuplicateKeyError):
        db.c.update_one({"user_id": 3, "tag": "nope"}, {"$set": {"user_id": 2}}, upsert=True)
    with pytest.raises(DuplicateKeyError):
        db.c.find_one_and_update({"user_id": 2, "tag": "y"}, {"$set": {"a": 1}}, upsert=True)
    db.c.drop_index("expires_at_1")
    assert "expires_at_1" not in {i["name"] for i in db.c.list_indexes()}
    assert db.c.delete_many({"user_id": {"$gte": 1}}).deleted_count == 2


def test_index_conflicts_answer_as_mongodb_does(db):
    db.c.create_index("user_id", unique=True)
    db.c.create_index("expires_at", expireAfterSeconds=0)
    db.c.create_index("user_id", unique=True)  # the same index again: nothing to do
    conflicts = [
        (lambda: db.c.create_index("expires_at", expireAfterSeconds=60), 85),  # same name, another TTL
        (lambda: db.c.create_index("user_id"), 86),  # same name, not unique
        (lambda: db.c.create_index([("user_id", -1)], name="user_id_1", unique=True), 86),  # same name, other key
        (lambda: db.c.create_index("user_id", name="other", unique=True), 85),  # same index, other name
    ]
    for create, code in conflicts:
        with pytest.raises(OperationFailure) as error:
            create()
        assert error.value.code == code, error.value.details
    assert sorted(i["name"] for i in db.c.list_indexes()) == ["_id_", "expires_at_1", "user_id_1"]


def test_unknown_command_names_itself(db):
    with pytest.raises(OperationFailure) as error:
        db.command("frobnicate")
    assert error.value.code == 59 and "frobnicate" in str(error.value)


def test_concurrent_pushes_lose_nothing(server):
    clients = [MongoClient(server + "/?directConnection=true") for _ in range(5)]
    coll_name = "c%d" % next(_names)
    clients[0].t.get_collection(coll_name).create_index("user_id", unique=True)

    def push(i):
        c = clients[i % 5].t.get_collection(coll_name)
        c.update_one({"user_id": 1}, {"$push": {"log": {"$each": [{"n": i}], "$slice": -30}}}, upsert=True)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = clients[0].t.get_collection(coll_name).find_one({"user_id": 1})
    assert len(doc["log"]) == 30 and len({e["n"] for e in doc["log"]}) == 30
    assert clients[0].t.get_collection(coll_name).count_documents({}) == 1


def test_fail_point_fails_the_named_commands_the_given_number_of_times(db):
    admin = db.client.admin
    admin.command({"configureFailPoint": "failCommand", "mode": {"times": 2},
                   "data": {"failCommands": ["insert"], "errorCode": 112, "errorLabels": ["TransientTransactionError"]}})
    for _ in range(2):
        with pytest.raises(OperationFailure) as error:
            db.c.insert_one({"a": 1})
        assert error.value.code == 112 and "TransientTransactionError" in error.value.details["errorLabels"]
    db.c.insert_one({"a": 2})
    assert [d["a"] for d in db.c.find({}, {"_id": 0})] == [2], "failed commands did not run"
    admin.command({"configureFailPoint": "failCommand", "mode": "alwaysOn", "data": {"failCommands": ["find"], "errorCode": 2}})
    for _ in range(3):
        with pytest.raises(OperationFailure):
            db.c.find_one({})
    admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    assert db.c.find_one({}, {"_id": 0}) == {"a": 2}


def test_fail_point_can_lose_the_reply_of_a_command_that_ran(server):
    from pymongo.errors import AutoReconnect
    client = MongoClient(server + "/?directConnection=true", retryWrites=False)
    coll = client.t.get_collection("c%d" % next(_names))
    client.admin.command({"configureFailPoint": "failCommand", "mode": {"times": 1},
                          "data": {"failCommands": ["insert"], "closeConnection": True, "standinAfterCommand": True}})
    with pytest.raises(AutoReconnect):
        coll.insert_one({"a": 1})
    assert coll.count_documents({}) == 1, "the command ran; only its reply was lost"
    client.close()


def test_fail_point_can_report_a_write_concern_error_after_the_write(db):
    from pymongo.errors import WriteConcernError
    db.client.admin.command({"configureFailPoint": "failCommand", "mode": {"times": 1},
                             "data": {"failCommands": ["insert"], "writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out"}}})
    with pytest.raises(WriteConcernError) as error:
        db.c.insert_one({"a": 1})
    assert error.value.code == 64
    assert db.c.count_documents({}) == 1, "the write happened"


def test_reply_delay_hook(db):
    db.c.insert_one({"a": 1})
    db.client.admin.command("standinSetDelay", 300)
    try:
        started = time.monotonic()
        db.c.find_one({})
        assert time.monotonic() - started >= 0.3
    finally:
        db.client.admin.command("standinSetDelay", 0)


def test_exits_with_its_parent():
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys; p = subprocess.Popen([sys.executable, %r, '--port', '0', '--exit-with-parent'], stdout=subprocess.PIPE, text=True);"
        "p.stdout.readline(); print(p.pid, flush=True)") % SCRIPT], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child_pid, 9)
    pytest.fail("the stand-in outlived its parent")
