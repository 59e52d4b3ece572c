"""Checks the dashboard and the alarms against the code: every metric they name in the service's namespace is
one the code emits, and what an operator must see and be woken by is there.

The metric names come from the code, never from this file: the `Metric::X => "Name"` table of
`functions/lambda-adapter/src/metrics.rs`, kept only for the variants some non-test Rust source outside that
file uses (`Metric::X`), so a name nothing emits fails like an unknown one.
"""

import glob
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS_RS = os.path.join("functions", "lambda-adapter", "src", "metrics.rs")
# Where emitting code lives (tests/ only asserts on metrics, it emits none).
RUST_SOURCES = ("functions/*/src/**/*.rs", "domain/src/**/*.rs")
# How the template names the service's EMF namespace, in a dashboard body and in an alarm.
NAMESPACE_SUB = "${MetricsNamespace}"
NAMESPACE_REF = {"Ref": "MetricsNamespace"}
EMF_DIMENSION = "function"
GRID_WIDTH = 24


def _function_body(source, name):
    """The text between the braces of `fn name(...)` (other functions, e.g. the units, map variants too)."""
    start = re.search(r"\bfn %s\s*\(" % name, source)
    assert start, "fn %s not found in %s" % (name, METRICS_RS)
    opening = source.index("{", start.end())
    depth = 0
    for end in range(opening, len(source)):
        depth += {"{": 1, "}": -1}.get(source[end], 0)
        if depth == 0:
            return source[opening:end]
    raise AssertionError("fn %s in %s does not close" % (name, METRICS_RS))


def metric_table():
    """Variant → metric name, from the `Metric::X => "Name"` arms of `fn name` in metrics.rs."""
    with open(os.path.join(ROOT, METRICS_RS)) as f:
        table = dict(re.findall(r'Metric::(\w+)\s*=>\s*"(\w+)"', _function_body(f.read(), "name")))
    assert table, "no `Metric::X => \"Name\"` arms in fn name of %s" % METRICS_RS
    return table


def _production_part(source):
    """A Rust file without its test module, which by this project's convention closes the file."""
    return source.split("#[cfg(test)]", 1)[0]


def emitted_metrics():
    """The names of the metrics some production code emits: table entries whose variant is used outside metrics.rs."""
    table = metric_table()
    used = set()
    for pattern in RUST_SOURCES:
        for path in glob.glob(os.path.join(ROOT, pattern), recursive=True):
            if os.path.relpath(path, ROOT) == METRICS_RS:
                continue
            with open(path) as f:
                used |= set(re.findall(r"\bMetric::(\w+)", _production_part(f.read())))
    return {name for variant, name in table.items() if variant in used}


# --- The dashboard ---------------------------------------------------------------------------------------

def dashboard_body(resource):
    """The dashboard's JSON. Every `${...}` of its Fn::Sub sits inside a JSON string, so the text parses as is
    and keeps the references (e.g. "${GetTicketsFunction}") for the checks to read."""
    body = resource["Properties"]["DashboardBody"]
    text = body.get("Fn::Sub") if isinstance(body, dict) else body
    if isinstance(text, list):
        text = text[0]
    return json.loads(text.replace("${!", "${"))


def series(widget):
    """Each line of a metric widget's "metrics": {namespace, name, dimensions, stat, id} for a metric (with
    "." repeating the line above), {expression, id} for metric math."""
    properties = widget.get("properties", {})
    previous, lines = [], []
    for row in properties.get("metrics", []):
        options = row[-1] if row and isinstance(row[-1], dict) else {}
        fields = row[:-1] if options else list(row)
        if not fields:
            lines.append({"expression": options.get("expression"), "id": options.get("id")})
            continue
        fields = [previous[i] if f == "." and i < len(previous) else f for i, f in enumerate(fields)]
        previous = fields
        lines.append({
            "namespace": fields[0],
            "name": fields[1] if len(fields) > 1 else None,
            "dimensions": dict(zip(fields[2::2], fields[3::2])) if len(fields) % 2 == 0 else None,
            "stat": options.get("stat", properties.get("stat", "Average")),
            "id": options.get("id"),
        })
    return lines


def _sub_reference(value):
    match = re.fullmatch(r"\$\{([A-Za-z0-9]+)\}", value) if isinstance(value, str) else None
    return match.group(1) if match else None


def _dashboard_problems(body, binaries, function_ids, api_id, emitted):
    found, charted = [], []
    widgets = body.get("widgets") if isinstance(body, dict) else None
    if not isinstance(widgets, list) or not widgets:
        return ["the dashboard has no widgets"], charted
    for index, widget in enumerate(widgets):
        where = "dashboard widget %d (%s)" % (index, widget.get("properties", {}).get("title", widget.get("type")))
        place = [widget.get(k) for k in ("x", "y", "width", "height")]
        if not all(isinstance(v, int) and v >= 0 for v in place) or place[0] + place[2] > GRID_WIDTH:
            found.append("%s: x, y, width, height must place it on the %d-column grid, not %s" % (where, GRID_WIDTH, place))
        if widget.get("type") != "metric":
            continue
        lines = series(widget)
        ids = {line["id"] for line in lines if line.get("id")}
        for line in lines:
            if "expression" in line:
                for name in set(re.findall(r"\b[a-z]\w*\b", line["expression"] or "")) - ids:
                    found.append("%s: expression %r uses %s, which no line of the widget defines" % (where, line["expression"], name))
                continue
            namespace, name, dimensions = line["namespace"], line["name"], line["dimensions"]
            if dimensions is None:
                found.append("%s: %s %s has a dimension name without a value" % (where, namespace, name))
                continue
            if namespace == NAMESPACE_SUB:
                if name not in emitted:
                    found.append("%s: the dashboard charts %s, which the code never emits" % (where, name))
                if set(dimensions) != {EMF_DIMENSION} or dimensions[EMF_DIMENSION] not in binaries:
                    found.append("%s: %s must have the one dimension %s = a function of the stack, not %s"
                                 % (where, name, EMF_DIMENSION, dimensions))
            elif namespace == "AWS/Lambda":
                if set(dimensions) != {"FunctionName"} or _sub_reference(dimensions["FunctionName"]) not in function_ids:
                    found.append("%s: AWS/Lambda %s must have FunctionName = ${<a function of the stack>}, not %s" % (where, name, dimensions))
            elif namespace == "AWS/ApiGateway":
                if dimensions != {"ApiId": "${%s}" % api_id}:
                    found.append("%s: AWS/ApiGateway %s must have ApiId = ${%s}, not %s" % (where, name, api_id, dimensions))
            else:
                found.append("%s: namespace %s is not the service's (%s), AWS/Lambda or AWS/ApiGateway"
                             % (where, namespace, NAMESPACE_SUB))
            charted.append(dict(line, widget=lines))
    return found, charted


def _required_charts(charted, function_ids):
    """What the issue asks the dashboard to show, checked on what it charts."""
    found = []

    def has(namespace, name, stat=None, dimensions=None):
        return any(c["namespace"] == namespace and c["name"] == name and (stat is None or c["stat"] == stat)
                   and (dimensions is None or c["dimensions"] == dimensions) for c in charted)

    for name in ("IntegrityMismatch", "WriteRetries", "SweptDocuments", "TrimmedLogs"):
        if not has(NAMESPACE_SUB, name):
            found.append("the dashboard does not chart %s" % name)
    for stat in ("p50", "p99"):
        if not has(NAMESPACE_SUB, "DbLatency", stat):
            found.append("the dashboard does not chart DbLatency %s" % stat)
    for logical_id in sorted(function_ids):
        function = {"FunctionName": "${%s}" % logical_id}
        for name, stat in (("Invocations", None), ("Duration", "p99"), ("Errors", None), ("Throttles", None)):
            if not has("AWS/Lambda", name, stat, function):
                found.append("the dashboard does not chart %s's Lambda %s%s" % (logical_id, name, " " + stat if stat else ""))
    # The hit ratio: one expression over the ids of the hits, misses and stale reads.
    outcome = {"CacheHit", "CacheMiss", "CacheStale"}
    ratio = False
    for c in charted:
        widget = c["widget"]
        by_id = {line["id"]: line.get("name") for line in widget if line.get("id") and "expression" not in line}
        for line in widget:
            if "expression" in line:
                named = {by_id.get(i) for i in re.findall(r"\b[a-z]\w*\b", line["expression"] or "")}
                ratio = ratio or outcome <= named
    if not ratio:
        found.append("the dashboard has no hit ratio (an expression over CacheHit, CacheMiss and CacheStale)")
    return found


# --- The alarms ------------------------------------------------------------------------------------------

def _alarm_metrics(props):
    """(namespace, name, dimensions as a dict, statistic, period) of each metric an alarm reads."""
    if "MetricName" in props:
        yield (props.get("Namespace"), props["MetricName"], {d.get("Name"): d.get("Value") for d in props.get("Dimensions", [])},
               props.get("Statistic"), props.get("Period"))
    for item in props.get("Metrics", []):
        stat = item.get("MetricStat")
        if stat:
            metric = stat.get("Metric", {})
            yield (metric.get("Namespace"), metric.get("MetricName"),
                   {d.get("Name"): d.get("Value") for d in metric.get("Dimensions", [])}, stat.get("Stat"), stat.get("Period"))


def _fires_on_one(props):
    """Sum/Maximum ≥ 1, or > 0: one occurrence is enough."""
    comparison, threshold = props.get("ComparisonOperator"), props.get("Threshold")
    return ((comparison == "GreaterThanOrEqualToThreshold" and threshold == 1)
            or (comparison == "GreaterThanThreshold" and threshold == 0))


def _alarm_problems(alarms, resources, binaries, api_id, emitted, integrity_functions):
    found = []
    integrity_alarmed = set()
    for logical_id, props in alarms.items():
        for namespace, name, dimensions, statistic, period in _alarm_metrics(props):
            if namespace != NAMESPACE_REF:
                continue
            if name not in emitted:
                found.append("alarm %s watches %s, which the code never emits" % (logical_id, name))
            if set(dimensions) != {EMF_DIMENSION} or dimensions[EMF_DIMENSION] not in binaries:
                found.append("alarm %s: %s must have the one dimension %s = a function of the stack, not %s"
                             % (logical_id, name, EMF_DIMENSION, dimensions))
            elif (name == "IntegrityMismatch" and "MetricName" in props and statistic == "Sum"
                  and isinstance(period, int) and period <= 300 and _fires_on_one(props)):
                integrity_alarmed.add(dimensions[EMF_DIMENSION])
    # Any IntegrityMismatch: for every function the dashboard charts it for, Sum >= 1 over at most 5 minutes.
    if not integrity_alarmed:
        found.append("no alarm fires on an IntegrityMismatch (Sum >= 1 over 5 minutes)")
    for function in sorted(set(integrity_functions) - integrity_alarmed):
        found.append("%s's IntegrityMismatch is charted but has no alarm (Sum >= 1 over 5 minutes)" % function)

    # Every scheduler dead-letter queue: an alarm as soon as one message waits in it.
    for schedule_id, schedule in resources.items():
        if schedule["Type"] != "AWS::Scheduler::Schedule":
            continue
        arn = schedule["Properties"].get("Target", {}).get("DeadLetterConfig", {}).get("Arn")
        queue = arn.get("Fn::GetAtt", [None])[0] if isinstance(arn, dict) else None
        watched = any(namespace == "AWS/SQS" and name == "ApproximateNumberOfMessagesVisible"
                      and dimensions == {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}} and _fires_on_one(props)
                      for props in alarms.values() for namespace, name, dimensions, _, _ in _alarm_metrics(props))
        if queue and not watched:
            found.append("%s's dead-letter queue %s has no alarm on ApproximateNumberOfMessagesVisible >= 1" % (schedule_id, queue))

    # The API's 5xx rate: an expression over its 5xx and Count.
    api = json.dumps({"ApiId": {"Ref": api_id}})
    rate = False
    for props in alarms.values():
        by_id = {m.get("Id"): m["MetricStat"].get("Metric", {}) for m in props.get("Metrics", []) if "MetricStat" in m}
        sources = {i: (m.get("Namespace"), m.get("MetricName"),
                       json.dumps({d.get("Name"): d.get("Value") for d in m.get("Dimensions", [])}))
                   for i, m in by_id.items()}
        for item in props.get("Metrics", []):
            expression = item.get("Expression")
            if isinstance(expression, dict):
                expression = expression.get("Fn::Sub")
            if item.get("ReturnData", True) and isinstance(expression, str):
                used = {sources.get(i) for i in re.findall(r"\b[a-z]\w*\b", expression)}
                rate = rate or {("AWS/ApiGateway", "5xx", api), ("AWS/ApiGateway", "Count", api)} <= used
    if not rate:
        found.append("no alarm on the API's 5xx rate (an expression over AWS/ApiGateway 5xx and Count of %s)" % api_id)
    return found


def problems(cfn, function_ids_by_binary):
    """Every mismatch between the translated template's dashboard and alarms and the code."""
    resources = cfn["Resources"]
    binaries = set(function_ids_by_binary)
    function_ids = set(function_ids_by_binary.values())
    apis = [k for k, v in resources.items() if v["Type"] == "AWS::ApiGatewayV2::Api"]
    api_id = apis[0] if len(apis) == 1 else None
    emitted = emitted_metrics()
    found = []
    dashboards = {k: v for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Dashboard"}
    charted = []
    if len(dashboards) != 1:
        found.append("expected one CloudWatch dashboard, found %d" % len(dashboards))
    for logical_id, dashboard in dashboards.items():
        try:
            body = dashboard_body(dashboard)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            found.append("dashboard %s: the body is not JSON with every ${...} inside a string: %s" % (logical_id, error))
            continue
        widget_problems, charted = _dashboard_problems(body, binaries, function_ids, api_id, emitted)
        found += widget_problems + _required_charts(charted, function_ids)
        shown = {_sub_reference(a.replace(".Arn}", "}")) for w in body.get("widgets", []) if w.get("type") == "alarm"
                 for a in w.get("properties", {}).get("alarms", []) if isinstance(a, str) and a.endswith(".Arn}")}
        alarm_ids = {k for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
        for alarm in sorted(alarm_ids - shown):
            found.append("dashboard %s: alarm %s is missing from its alarm widget" % (logical_id, alarm))
        for other in sorted(shown - alarm_ids, key=str):
            found.append("dashboard %s: its alarm widget shows %s, which is no alarm of the stack" % (logical_id, other))
    alarms = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    integrity_functions = {c["dimensions"][EMF_DIMENSION] for c in charted
                           if c["namespace"] == NAMESPACE_SUB and c["name"] == "IntegrityMismatch" and c["dimensions"]
                           and EMF_DIMENSION in c["dimensions"]}
    found += _alarm_problems(alarms, resources, binaries, api_id, emitted, integrity_functions)
    return found
