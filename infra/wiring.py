"""Checks that the SAM template is wired the way the code expects.

The expectations come from the code, never from this file: routes from `functions/routes.json` (the route
table the functions use), environment variables from `domain/src/config.rs` (module `env`). The template
is translated locally with aws-sam-translator (no AWS account), and `problems()` lists every mismatch.
"""

import copy
import json
import os
import re

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

import connection_budget
import edge
import monitoring

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")
# Set by the deployment itself, never as plain variables in the template.
NOT_IN_TEMPLATE = {"AUTH_MODE", "MONGODB_URI"}
SECRET_PARAMETER = "MongoUriSecretArn"
# What an HTTP function needs after its first contact and one operation: building and sending the reply.
REPLY_MARGIN_MS = 1000
CUSTOM_RESOURCE_TYPES = ("Custom::", "AWS::CloudFormation::CustomResource")
PARAMETERS = {
    SECRET_PARAMETER: "arn:aws:secretsmanager:us-east-1:123456789012:secret:mongodb-uri-AbCdEf",
    "JwtIssuer": "https://issuer.example.com",
    "JwtAudience": "client-id",
}


class _ManagedPolicies:
    """Stands in for the IAM lookup the translator makes for AWS managed policy names."""

    def load(self):
        return {name: "arn:aws:iam::aws:policy/service-role/" + name
                for name in ("AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole")}


def routes():
    with open(os.path.join(ROOT, "functions", "routes.json")) as f:
        return json.load(f)["routes"]


def env_vars():
    """Every `pub const NAME: &str = "VALUE";` in `pub mod env` of the configuration module."""
    with open(os.path.join(ROOT, "domain", "src", "config.rs")) as f:
        source = f.read()
    module = re.search(r"pub mod env \{(.*?)\n\}", source, re.S)
    assert module, "pub mod env not found in domain/src/config.rs"
    return set(re.findall(r'pub const \w+: &str = "([A-Z0-9_]+)";', module.group(1)))


def sweeper_task(constant):
    """A schedule input's `task` the sweeper dispatches on (`pub const <constant>` in sweeper.rs)."""
    with open(os.path.join(ROOT, "functions", "lambda-adapter", "src", "sweeper.rs")) as f:
        found = re.search(r'pub const %s: &str = "([a-z_]+)";' % constant, f.read())
    assert found, "%s not found in functions/lambda-adapter/src/sweeper.rs" % constant
    return found.group(1)


def audit_task():
    """The schedule input's `task` that makes the sweeper audit (`pub const AUDIT_TASK` in sweeper.rs)."""
    return sweeper_task("AUDIT_TASK")


def merge_task():
    """The schedule input's `task` that makes the sweeper merge duplicates (`pub const MERGE_TASK`)."""
    return sweeper_task("MERGE_TASK")


def load_template(path=TEMPLATE):
    with open(path) as f:
        return yaml_parse(f.read())


def translate(template):
    """The CloudFormation SAM would deploy (CodeUri stands in for what `sam package` uploads)."""
    template = copy.deepcopy(template)
    template.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://bucket/code.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(template, dict(PARAMETERS), _ManagedPolicies())


def function_ids(template):
    """Binary name → logical id, from each function's cargo-lambda build metadata."""
    ids = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
            ids[binary] = logical_id
    return ids


def _statements(resources):
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        documents = []
        if resource["Type"] == "AWS::IAM::ManagedPolicy":
            documents.append(props.get("PolicyDocument", {}))
        if resource["Type"] == "AWS::IAM::Role":
            documents += [p.get("PolicyDocument", {}) for p in props.get("Policies", [])]
        for document in documents:
            for statement in document.get("Statement", []):
                yield logical_id, statement


def problems(template, configurations=None):
    """Every mismatch; the connection budget is checked for the template's defaults and for `configurations`
    ({description: parameter overrides}, by default those of samconfig.toml)."""
    found = []
    cfn = translate(template)
    resources = cfn["Resources"]
    ids = function_ids(template)
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}

    # Every route of the code, to the right function, behind the right authorizer; nothing else.
    apis = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    if len(apis) != 1:
        return found + ["expected one HTTP API, found %d" % len(apis)]
    body = apis[0]["Properties"]["Body"]
    paths = body.get("paths", {})
    schemes = body.get("components", {}).get("securitySchemes", {})
    declared = {(m.upper(), p) for p, methods in paths.items() for m in methods}
    wanted = {(r["method"], r["path"]) for r in routes()}
    for extra in sorted(declared - wanted):
        found.append("route %s %s is in the template but not in functions/routes.json" % extra)
    for route in routes():
        operation = paths.get(route["path"], {}).get(route["method"].lower())
        if operation is None:
            found.append("route %s %s is missing from the template" % (route["method"], route["path"]))
            continue
        logical_id = ids.get(route["function"])
        uri = json.dumps(operation.get("x-amazon-apigateway-integration", {}).get("uri"))
        if logical_id is None or "${%s.Arn}" % logical_id not in uri:
            found.append("route %s %s does not invoke %s" % (route["method"], route["path"], route["function"]))
        if operation.get("x-amazon-apigateway-integration", {}).get("payloadFormatVersion") != "2.0":
            found.append("route %s %s does not use payload format 2.0" % (route["method"], route["path"]))
        security = [name for entry in operation.get("security", []) for name in entry]
        if route["auth"] == "jwt":
            ok = len(security) == 1 and schemes.get(security[0], {}).get("x-amazon-apigateway-authorizer", {}).get("type") == "jwt"
        else:
            ok = security == ["AWS_IAM"]
        if not ok:
            found.append("route %s %s is guarded by %s, expected %s" % (route["method"], route["path"], security, route["auth"]))

    # The functions: runtime, handler, environment.
    expected_env = env_vars() - NOT_IN_TEMPLATE
    for name, logical_id in ids.items():
        function = functions.get(logical_id)
        if function is None:
            found.append("function %s was not translated" % name)
            continue
        props = function["Properties"]
        if props.get("Runtime") != "provided.al2023" or props.get("Handler") != "bootstrap":
            found.append("%s: runtime must be provided.al2023 with handler bootstrap" % name)
        variables = props.get("Environment", {}).get("Variables", {})
        for forbidden in sorted(NOT_IN_TEMPLATE & set(variables)):
            found.append("%s sets %s" % (name, forbidden))
        for missing in sorted(expected_env - set(variables)):
            found.append("%s does not set %s, which the code reads" % (name, missing))
        for unknown in sorted(set(variables) - env_vars()):
            found.append("%s sets %s, which the code never reads" % (name, unknown))

    # Three schedules target the sweeper, with retries and a dead-letter queue: the sweep, and the audit and
    # the duplicate merge with the task inputs the code dispatches on.
    schedules = [r for r in resources.values() if r["Type"] == "AWS::Scheduler::Schedule"]
    sweeper = ids.get("ttl-sweeper")
    if len(schedules) != 3:
        found.append("expected three EventBridge Scheduler schedules (sweep, audit, merge), found %d" % len(schedules))
    tasks = sorted(json.loads(s["Properties"]["Target"].get("Input") or "{}").get("task", "sweep") for s in schedules)
    if tasks != sorted(["sweep", audit_task(), merge_task()]):
        found.append("the schedules' tasks are %s, expected a sweep, %r and %r (sweeper.rs AUDIT_TASK, MERGE_TASK)"
                     % (tasks, audit_task(), merge_task()))
    for schedule in schedules:
        target = schedule["Properties"]["Target"]
        if target.get("Arn") != {"Fn::GetAtt": [sweeper, "Arn"]}:
            found.append("the schedule does not target the sweeper: %s" % target.get("Arn"))
        if "RetryPolicy" not in target or "DeadLetterConfig" not in target:
            found.append("the schedule has no retry policy or dead-letter queue")

    # The indexes exist before the first write: a custom resource the sweeper serves creates them, for the
    # collection the functions use, and CloudFormation waits for it at least as long as the sweeper may run.
    sweeper_props = functions.get(sweeper, {}).get("Properties", {})
    custom = [r for r in resources.values() if r["Type"].startswith(CUSTOM_RESOURCE_TYPES)
              and r["Properties"].get("ServiceToken") == {"Fn::GetAtt": [sweeper, "Arn"]}]
    if len(custom) != 1:
        found.append("expected one custom resource served by the sweeper to create the indexes at deployment, found %d"
                     % len(custom))
    sweeper_env = sweeper_props.get("Environment", {}).get("Variables", {})
    for resource in custom:
        props = resource["Properties"]
        for prop, variable in (("Database", "MONGODB_DATABASE"), ("Collection", "MONGODB_COLLECTION")):
            if props.get(prop) != sweeper_env.get(variable):
                found.append("the index custom resource's %s is %s, not the functions' %s" % (prop, props.get(prop), variable))
        wait, runs = props.get("ServiceTimeout"), sweeper_props.get("Timeout")
        if not isinstance(wait, int) or not isinstance(runs, int) or not runs <= wait <= 3600:
            found.append("the index custom resource's ServiceTimeout (%s) must cover the sweeper's timeout (%s s) and be at most 3600"
                         % (wait, runs))

    # A cold environment's first request (first contact, then one operation) fits in its function's timeout.
    for name in sorted({r["function"] for r in routes()}):
        props = functions.get(ids.get(name), {}).get("Properties", {})
        variables = props.get("Environment", {}).get("Variables", {})
        try:
            first, operation = (int(variables[v]) for v in ("MONGODB_FIRST_CONNECT_MS", "MONGODB_TIMEOUT_MS"))
            timeout_ms = int(props["Timeout"]) * 1000
        except (KeyError, TypeError, ValueError):
            found.append("%s: the first-contact budget cannot be checked against its timeout (values must be literal)" % name)
            continue
        if first + operation + REPLY_MARGIN_MS > timeout_ms:
            found.append("%s: MONGODB_FIRST_CONNECT_MS %d + MONGODB_TIMEOUT_MS %d + %d ms to reply exceed its %d ms timeout"
                         % (name, first, operation, REPLY_MARGIN_MS, timeout_ms))

    # Secrets: read-only, on the one secret.
    for logical_id, statement in _statements(resources):
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if any(a.lower().startswith("secretsmanager:") or a == "*" for a in actions):
            if [a.lower() for a in actions] != ["secretsmanager:getsecretvalue"]:
                found.append("%s grants %s on secrets (only GetSecretValue)" % (logical_id, actions))
            if statement.get("Resource") != {"Ref": SECRET_PARAMETER}:
                found.append("%s grants secret access on %s, not only the secret parameter" % (logical_id, statement.get("Resource")))
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::IAM::Role":
            arns = json.dumps(resource["Properties"].get("ManagedPolicyArns", []))
            if "SecretsManagerReadWrite" in arns:
                found.append("%s has SecretsManagerReadWrite" % logical_id)

    # Operations: a log group with retention and error/throttle alarms per function.
    groups = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    for name, logical_id in ids.items():
        if not any(name in json.dumps(g.get("LogGroupName")) and "RetentionInDays" in g for g in groups):
            found.append("%s has no log group with retention" % name)
        for metric in ("Errors", "Throttles"):
            if not any(a.get("MetricName") == metric and {"Ref": logical_id} in [d.get("Value") for d in a.get("Dimensions", [])] for a in alarms):
                found.append("%s has no %s alarm" % (name, metric))

    # The dashboard and the alarms on the code's metrics; the edge; the MongoDB connection budget.
    found += monitoring.problems(cfn, ids)
    found += edge.problems(cfn)
    if configurations is None:
        configurations = connection_budget.configurations()
    route_functions = {ids.get(r["function"]) for r in routes()}
    for where, overrides in dict({"the template's defaults": {}}, **configurations).items():
        found += connection_budget.problems(template, cfn, route_functions, overrides, where)
    return found
