"""The PUT write's alternatives, measured on the database side (`make bench`; bench/README.md "PUT").

Each alternative writes the benchmark user's 20+20 passes (about 2 KiB of payload each) over a stored
document of 20+20 passes and 100+100 log entries, as `TicketCache::replace_passes` does, through pymongo.
Reported per alternative: the server's CPU time per write (all processes of the engine, summed from /proc,
median over blocks: less sensitive to a busy host than wall time) and the client's wall time p50. The
engines are started here: DocumentDB through its launcher (skipped with a reason when absent) and the
stand-in. The pipelines are built as the Rust code builds them. In use: `index_stages` in a `findAndModify`
sorted by `_id` answering with the stored timestamp (the single PUT: the sort picks a user's document
when there are several), and in an `update` (the bulk PUT, each statement naming its document's `_id`).

    python bench/put_pipelines.py [--writes 40] [--rounds 6] [--markdown]
"""

import argparse
import copy
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

from bson import Int64
from pymongo import MongoClient
from pymongo.errors import OperationFailure

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAUNCHER = os.environ.get("DOCUMENTDB_LAUNCHER", os.path.join(ROOT, "..", "shared", "documentdb", "documentdb"))
STANDIN = os.path.join(ROOT, "tests", "mongo-standin", "standin.py")
MAX_SAFE_INTEGER = 2**53 - 1
RESERVED = ["integrity"]


def realistic_pass(uuid):
    """The pass of `bench_support::realistic_pass`, as the service stores it."""
    stops = [{"stop_id": f"S{i:04}", "name": f"Station number {i}", "zone": i % 3} for i in range(12)]
    payload = {"pass_uuid": uuid, "product": "7-Day Unlimited", "fare": {"amount": 34.0, "currency": "USD"},
               "rides": 1, "valid": True, "activation": {"start": Int64(1732400000001), "end": None},
               "tags": ["bus", "rail", "ferry"], "stops": stops, "signature": "a" * 400}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return {"pass_uuid": uuid, "timestamp": Int64(1732400000000), "status": "ACTIVE", "free_ticket_status": 0,
            "payload": payload, "payload_hash": digest, "payload_hash_alg": "sha256-jcs"}


PASSES = {"passes": [realistic_pass(f"pass-{i}") for i in range(20)],
          "passes4": [realistic_pass(f"pass4-{i}") for i in range(20)]}


def log():
    return [{"id": f"e{i}", "errors": [{"code": "BM_TIMEOUT", "message": "upstream timeout"}],
             "server_time": "2026-11-25T00:00:00.000Z", "data": {"attempt": i}} for i in range(100)]


def writable(t):
    s = "$timestamp"
    return {"$or": [{"$not": [{"$isNumber": s}]}, {"$lt": [s, 0]}, {"$gt": [s, MAX_SAFE_INTEGER]}, {"$lte": [s, Int64(t)]}]}


def guard(t):
    return lambda new, name: {"$cond": [writable(t), new, "$" + name]}


def stored_array(field):
    return {"$cond": [{"$isArray": "$" + field}, "$" + field, []]}


def without_reserved(var):
    return {"$arrayToObject": {"$filter": {"input": {"$objectToArray": var}, "as": "f",
                                           "cond": {"$not": [{"$in": ["$$f.k", RESERVED]}]}}}}


# --- how each alternative writes one array -----------------------------------------------------------

def scan_merge(field, new):
    """Before: for each new pass, a $filter scan of the stored array for its uuid, then the merge."""
    stored_pass = {"$arrayElemAt": [{"$filter": {"input": stored_array(field), "as": "old",
                                                 "cond": {"$eq": ["$$old.pass_uuid", "$$new.pass_uuid"]}}}, 0]}
    return {"$map": {"input": {"$literal": new}, "as": "new", "in": {"$mergeObjects": [
        without_reserved({"$ifNull": [stored_pass, {}]}), "$$new"]}}}


def uuid_index(field, new):
    """The stored passes whose uuid is being written, by uuid (first one kept), reserved names dropped."""
    carries = {"$or": [{"$ne": [{"$type": f"$$old.{n}"}, "missing"]} for n in RESERVED]}
    return {"$arrayToObject": {"$map": {
        "input": {"$reverseArray": {"$filter": {"input": stored_array(field), "as": "old",
                                                "cond": {"$in": ["$$old.pass_uuid", {"$literal": [p["pass_uuid"] for p in new]}]}}}},
        "as": "old", "in": {"k": "$$old.pass_uuid", "v": {"$cond": [carries, without_reserved("$$old"), "$$old"]}}}}}


def lookups(source, new):
    return [{"$mergeObjects": [{"$getField": {"field": {"$literal": p["pass_uuid"]}, "input": source}}, {"$literal": p}]}
            for p in new]


def positional(field, new):
    """The stored pass at the same position checked first (one comparison), the scan only on a miss."""
    out = []
    for k, p in enumerate(new):
        same = {"$eq": ["$$old.pass_uuid", {"$literal": p["pass_uuid"]}]}
        old = {"$ifNull": [{"$first": {"$filter": {"input": {"$slice": [stored_array(field), k, 1]}, "as": "old", "cond": same}}},
                           {"$first": {"$filter": {"input": stored_array(field), "as": "old", "cond": same}}}]}
        out.append({"$mergeObjects": [without_reserved({"$ifNull": [old, {}]}), {"$literal": p}]})
    return out


OWNED = ["pass_uuid", "timestamp", "status", "free_ticket_status", "payload", "payload_hash", "payload_hash_alg"]


def size_check(field, new):
    """The merge skipped for a stored pass whose $bsonSize shows it holds only owned fields."""
    def size(name):
        v, head = "$$old." + name, len(name) + 2
        return {"$switch": {"branches": [
            {"case": {"$eq": [{"$type": v}, "missing"]}, "then": 0},
            {"case": {"$eq": [{"$type": v}, "string"]}, "then": {"$add": [{"$strLenBytes": v}, 5 + head]}},
            {"case": {"$in": [{"$type": v}, ["object", "array"]]}, "then": {"$add": [{"$bsonSize": v}, head]}},
            {"case": {"$in": [{"$type": v}, ["long", "double", "date"]]}, "then": 8 + head},
            {"case": {"$eq": [{"$type": v}, "int"]}, "then": 4 + head},
            {"case": {"$eq": [{"$type": v}, "bool"]}, "then": 1 + head},
            {"case": {"$eq": [{"$type": v}, "null"]}, "then": head},
        ], "default": -1}}
    owned_only = {"$eq": [{"$bsonSize": "$$old"}, {"$add": [5] + [size(n) for n in OWNED]}]}
    matches = {"$filter": {"input": stored_array(field), "as": "old", "cond": {"$eq": ["$$old.pass_uuid", "$$new.pass_uuid"]}}}
    merged = {"$map": {"input": matches, "as": "old", "in": {"$cond": [
        {"$or": [{"$ne": [{"$type": "$$old"}, "object"]}, owned_only]}, "$$new", {"$mergeObjects": [without_reserved("$$old"), "$$new"]}]}}}
    return {"$map": {"input": {"$literal": new}, "as": "new", "in": {"$ifNull": [{"$arrayElemAt": [merged, 0]}, "$$new"]}}}


def single_stage(per_array):
    def pipeline(t):
        g = guard(t)
        stage = {"timestamp": g(Int64(t), "timestamp"), "expires_at": g(Int64(t), "expires_at")}
        for field, new in PASSES.items():
            stage[field] = g(per_array(field, new), field)
        return [{"$set": stage}]
    return pipeline


def index_stages(t):
    """In use: stage 1 puts the uuid index where the array was; stage 2 looks each new pass up in it."""
    g = guard(t)
    first = {field: g(uuid_index(field, new), field) for field, new in PASSES.items()}
    second = {"timestamp": g(Int64(t), "timestamp"), "expires_at": g(Int64(t), "expires_at")}
    for field, new in PASSES.items():
        second[field] = g(lookups("$" + field, new), field)
    return [{"$set": first}, {"$set": second}]


def let_index(t):
    """The same index held in a $let instead of a stage (DocumentDB evaluates it again at every use)."""
    g = guard(t)
    stage = {"timestamp": g(Int64(t), "timestamp"), "expires_at": g(Int64(t), "expires_at")}
    for field, new in PASSES.items():
        stage[field] = g({"$let": {"vars": {"index": uuid_index(field, new)}, "in": lookups("$$index", new)}}, field)
    return [{"$set": stage}]


def raw_set(t):
    """The floor: the arrays and the timestamp set as they are (what the Node peer writes)."""
    return {"$set": {"timestamp": Int64(t), **PASSES}}


ALTERNATIVES = [
    # (name, pipeline, command)
    ("raw_set (floor: no guard, no merge)", raw_set, "update"),
    ("guard_only (monotonic guard, no merge)", single_stage(lambda field, new: {"$literal": new}), "update"),
    ("scan_merge, findAndModify (before)", single_stage(scan_merge), "findAndModify"),
    ("scan_merge, update", single_stage(scan_merge), "update"),
    ("positional check, update", single_stage(positional), "update"),
    ("size_check skips the merge, update", single_stage(size_check), "update"),
    ("let_index, update", let_index, "update"),
    ("index_stages, findAndModify", index_stages, "findAndModify"),
    ("index_stages, findAndModify sorted by _id, stored timestamp (in use: PUT)", index_stages, "findAndModify sorted"),
    ("index_stages, update (in use: bulk PUT)", index_stages, "update"),
    ("index_stages, update sorted by _id (MongoDB 8.0+; DocumentDB)", index_stages, "update sorted"),
]


def server_cpu_seconds(pids):
    """CPU time of the processes and all their descendants."""
    seen, stack, total = set(), list(pids), 0
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in os.listdir(f"/proc/{pid}/task"):
                stack += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def measure(uri, pids, writes, rounds):
    db = MongoClient(uri)["bench_put_pipelines"]
    coll = db["t"]
    coll.drop()
    coll.create_index("user_id", unique=True)
    coll.insert_one({"user_id": 42, "timestamp": Int64(1), **copy.deepcopy(PASSES), "passesLog": log(), "passes4Log": log()})
    t = int(time.time() * 1000)
    cpu = {name: [] for name, _, _ in ALTERNATIVES}
    wall = {name: [] for name, _, _ in ALTERNATIVES}
    unsupported = {}
    for _ in range(rounds):
        for name, pipeline, command in ALTERNATIVES:
            if name in unsupported:
                continue
            before = server_cpu_seconds(pids)
            for _ in range(writes):
                t += 1
                started = time.perf_counter()
                try:
                    if command == "update":
                        reply = db.command({"update": "t", "updates": [{"q": {"user_id": 42}, "u": pipeline(t), "upsert": True}]})
                    elif command == "update sorted":
                        reply = db.command({"update": "t", "updates": [{"q": {"user_id": 42}, "u": pipeline(t), "upsert": True,
                                                                        "sort": {"_id": 1}}]})
                    elif command == "findAndModify sorted":
                        reply = db.command({"findAndModify": "t", "query": {"user_id": 42}, "sort": {"_id": 1}, "update": pipeline(t),
                                            "upsert": True, "fields": {"_id": 0, "timestamp": 1}})
                    else:
                        reply = db.command({"findAndModify": "t", "query": {"user_id": 42}, "update": pipeline(t), "upsert": True,
                                            "new": True, "fields": {"_id": 0, "timestamp": 1}})
                except OperationFailure as failure:
                    reply = failure.details
                wall[name].append(time.perf_counter() - started)
                if reply.get("ok") != 1.0 or reply.get("writeErrors"):
                    unsupported[name] = (reply.get("writeErrors") or [reply])[0].get("errmsg", "")[:80]
                    break
            if name not in unsupported:
                cpu[name].append((server_cpu_seconds(pids) - before) / writes)
    for name, reason in unsupported.items():
        print(f"{name}: not run ({reason})", file=sys.stderr)
    stored = coll.find_one({"user_id": 42})
    assert stored["timestamp"] == t and len(stored["passes"]) == 20, "every alternative wrote"
    db.client.drop_database("bench_put_pipelines")
    return {name: (statistics.median(cpu[name]) * 1e3, statistics.median(wall[name]) * 1e3) for name in cpu if name not in unsupported}


def start_standin():
    proc = subprocess.Popen([sys.executable, STANDIN, "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    return proc, line.split(" ", 1)[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=40, help="writes per block")
    parser.add_argument("--rounds", type=int, default=6, help="blocks per alternative, interleaved")
    parser.add_argument("--port", type=int, default=10280, help="DocumentDB port (PostgreSQL uses PORT+1)")
    args = parser.parse_args()
    results = {}
    if os.path.exists(LAUNCHER):
        uri = subprocess.run([LAUNCHER, "start", str(args.port)], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        try:
            pids = [int(p) for p in subprocess.run(["pgrep", "-f", f"data-{args.port}"], capture_output=True, text=True).stdout.split()]
            results["DocumentDB"] = measure(uri, pids, args.writes, args.rounds)
        finally:
            subprocess.run([LAUNCHER, "stop", str(args.port)], capture_output=True)
    else:
        print(f"DocumentDB skipped: no launcher at {LAUNCHER}", file=sys.stderr)
    proc, uri = start_standin()
    try:
        results["stand-in"] = measure(uri, [proc.pid], max(args.writes // 4, 5), args.rounds)
    finally:
        proc.kill()
        proc.wait()
    engines = list(results)
    print("| alternative | " + " | ".join(f"{e} server CPU / write | {e} wall p50" for e in engines) + " |")
    print("|---|" + "---|---|" * len(engines))
    for name, _, _ in ALTERNATIVES:
        cells = " | ".join(f"{results[e][name][0]:.2f} ms | {results[e][name][1]:.2f} ms" if name in results[e] else "not supported | –"
                           for e in engines)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
