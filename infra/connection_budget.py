"""The fleet's MongoDB connections as a budget.

Each warm execution environment holds up to the client's pool (`max_pool_size`, read from
`functions/lambda-adapter/src/startup.rs`) plus one monitoring connection: in Lambda the driver polls each
server from one connection (mongodb 3.x recognises FaaS and opens no round-trip-time connection). Reserved
concurrency bounds the environments of a function, so the fleet holds at most

    sum over functions of reserved concurrency x (pool + 1)

connections on the node that serves them (the primary: the code sets no read preference). CloudFormation has
no arithmetic to check that at deployment, so it is checked here, for the template's defaults and for every
configuration in `infra/samconfig.toml` (what `make deploy` deploys), and a function without reserved
concurrency is refused: its connections would be unbounded.
"""

import os
import re
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTUP_RS = os.path.join(ROOT, "functions", "lambda-adapter", "src", "startup.rs")
SAMCONFIG = os.path.join(ROOT, "infra", "samconfig.toml")
BUDGET_PARAMETER = "MongoMaxConnections"
# Connections the driver holds per server besides the pool: its monitor (polling in Lambda).
MONITORING_CONNECTIONS = 1


def pool_size():
    """The client's default `max_pool_size`, as `connect` in startup.rs sets it."""
    with open(STARTUP_RS) as f:
        match = re.search(r"max_pool_size\.get_or_insert\((\d+)\)", f.read())
    assert match, "max_pool_size.get_or_insert(N) not found in %s" % STARTUP_RS
    return int(match.group(1))


def per_environment():
    return pool_size() + MONITORING_CONNECTIONS


def configurations(path=SAMCONFIG):
    """{description: parameter overrides} for every environment of samconfig.toml that deploys with any."""
    with open(path, "rb") as f:
        config = tomllib.load(f)
    found = {}
    for environment, commands in config.items():
        if not isinstance(commands, dict):
            continue
        overrides = commands.get("deploy", {}).get("parameters", {}).get("parameter_overrides")
        if overrides is None:
            continue
        items = overrides.split() if isinstance(overrides, str) else overrides
        found["samconfig.toml [%s]" % environment] = dict(item.split("=", 1) for item in items)
    return found


def parameter_values(template, overrides):
    values = {k: str(v["Default"]) for k, v in template.get("Parameters", {}).items() if "Default" in v}
    values.update(overrides)
    return values


def _resolve(value, values):
    """A literal number, or a parameter's value; None for anything else (it cannot be checked)."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        value = values.get(value["Ref"])
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def reservations(cfn, values):
    """{function logical id: its reserved concurrency, or None when it has none or it is not a number}."""
    return {k: _resolve(v["Properties"].get("ReservedConcurrentExecutions"), values)
            for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}


def largest_shared_reservation(cfn, budget):
    """The largest value of the parameter the functions share (ReservedConcurrency) that fits `budget`, given
    the functions whose reservation is a literal (the sweeper's 1). Returns (that value, how many functions
    share it, the connections of the literal reservations)."""
    each = per_environment()
    fixed = sharing = 0
    for function in cfn["Resources"].values():
        if function["Type"] != "AWS::Lambda::Function":
            continue
        reserved = function["Properties"].get("ReservedConcurrentExecutions")
        if isinstance(reserved, dict):
            sharing += 1
        else:
            fixed += int(reserved) * each
    return (budget - fixed) // (sharing * each), sharing, fixed


def problems(template, cfn, route_functions, overrides, where):
    """Every way the configuration `overrides` (over the template's defaults) breaks the budget; `where` names it."""
    values = parameter_values(template, overrides)
    each = per_environment()
    found = []
    budget = _resolve({"Ref": BUDGET_PARAMETER}, values)
    if budget is None:
        return ["%s: %s is not set to a number" % (where, BUDGET_PARAMETER)]
    reserved = reservations(cfn, values)
    for function, count in sorted(reserved.items()):
        if count is None or count < 1:
            found.append("%s: %s has no reserved concurrency, so nothing bounds its MongoDB connections" % (where, function))
    total = sum(count * each for count in reserved.values() if count and count > 0)
    if total > budget:
        terms = " + ".join("%s %d x %d" % (f, c, each) for f, c in sorted(reserved.items()) if c and c > 0)
        found.append("%s: the fleet may hold %s = %d MongoDB connections, over %s = %d"
                     % (where, terms, total, BUDGET_PARAMETER, budget))
    # A burst larger than a function's concurrency is turned away by Lambda (a 5xx), not by the edge (a 429).
    for stage in (v["Properties"] for v in cfn["Resources"].values() if v["Type"] == "AWS::ApiGatewayV2::Stage"):
        burst = _resolve(stage.get("DefaultRouteSettings", {}).get("ThrottlingBurstLimit"), values)
        for function in sorted(route_functions):
            count = reserved.get(function)
            if burst is not None and count and burst > count:
                found.append("%s: the API's burst limit %d exceeds %s's reserved concurrency %d" % (where, burst, function, count))
    return found
