"""Dashboard, alarms, edge protection and the MongoDB connection budget: checked against the code, and each
check proven by a mutated copy of the template (or of the code it reads) that it reports."""

import copy
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import connection_budget  # noqa: E402
import monitoring  # noqa: E402
import wiring  # noqa: E402

README = os.path.join(wiring.ROOT, "infra", "README.md")


def _mutated(change, configurations=None):
    template = copy.deepcopy(wiring.load_template())
    change(template["Resources"], template)
    return wiring.problems(template, configurations)


def _body_edit(edit):
    """A mutation of the dashboard body's text."""
    def change(resources, _):
        props = resources["Dashboard"]["Properties"]
        props["DashboardBody"] = {"Fn::Sub": edit(props["DashboardBody"]["Fn::Sub"])}
    return change


def _caught(found, text):
    assert any(text in p for p in found), "expected a problem containing %r, got %s" % (text, found)


# --- Metric names come from the code ---------------------------------------------------------------------

def test_the_metric_names_are_read_from_the_code():
    table = monitoring.metric_table()
    assert {"CacheHit", "DbLatency", "IntegrityMismatch", "SweptDocuments"} <= monitoring.emitted_metrics() <= set(table.values())
    # fn unit maps DbLatency to "Milliseconds": only fn name's arms are names.
    assert table["DbLatency"] == "DbLatency" and "Milliseconds" not in table.values()


def test_a_metric_only_tests_use_is_not_emitted(tmp_path, monkeypatch):
    adapter = tmp_path / "functions" / "lambda-adapter" / "src"
    adapter.mkdir(parents=True)
    (adapter / "metrics.rs").write_text(
        "impl Metric {\n    pub fn name(self) -> &'static str {\n        match self {\n"
        "            Metric::Served => \"Served\",\n            Metric::Orphan => \"Orphan\",\n        }\n    }\n"
        "    fn unit(self) -> &'static str {\n        match self {\n            Metric::Served => \"Milliseconds\",\n"
        "            _ => \"Count\",\n        }\n    }\n}\n")
    (adapter / "handlers.rs").write_text("fn serve() { emit(Metric::Served); }\n#[cfg(test)]\nmod tests { fn t() { emit(Metric::Orphan); } }\n")
    monkeypatch.setattr(monitoring, "ROOT", str(tmp_path))
    assert monitoring.metric_table() == {"Served": "Served", "Orphan": "Orphan"}
    assert monitoring.emitted_metrics() == {"Served"}


# --- The dashboard ---------------------------------------------------------------------------------------

def test_the_dashboard_body_is_json_with_every_widget_on_the_grid():
    body = monitoring.dashboard_body(wiring.load_template()["Resources"]["Dashboard"])
    cells = set()
    for widget in body["widgets"]:
        for x in range(widget["x"], widget["x"] + widget["width"]):
            for y in range(widget["y"], widget["y"] + widget["height"]):
                assert (x, y) not in cells, "widgets overlap at %s" % ((x, y),)
                cells.add((x, y))
    lines = [line for widget in body["widgets"] if widget["type"] == "metric" for line in monitoring.series(widget)]
    named = {line["name"] for line in lines if line.get("namespace") == monitoring.NAMESPACE_SUB}
    assert named <= monitoring.emitted_metrics() and {"CacheHit", "CacheMiss", "CacheStale", "WriteRetries"} <= named


def test_the_dot_shorthand_repeats_the_line_above():
    widget = {"properties": {"stat": "Sum", "metrics": [["NS", "A", "function", "f"], [".", "B", ".", ".", {"stat": "p99", "id": "b"}],
                                                       [{"expression": "b * 2", "id": "e"}]]}}
    assert monitoring.series(widget) == [
        {"namespace": "NS", "name": "A", "dimensions": {"function": "f"}, "stat": "Sum", "id": None},
        {"namespace": "NS", "name": "B", "dimensions": {"function": "f"}, "stat": "p99", "id": "b"},
        {"expression": "b * 2", "id": "e"},
    ]


def test_a_dashboard_naming_a_metric_the_code_does_not_emit_is_caught():
    found = _mutated(_body_edit(lambda body: body.replace('"WriteRetries"', '"WriteRetry"', 1)))
    _caught(found, "the dashboard charts WriteRetry, which the code never emits")


def test_a_dashboard_outside_the_namespace_parameter_or_the_stack_functions_is_caught():
    found = _mutated(_body_edit(lambda body: body.replace('"${MetricsNamespace}", "TrimmedLogs"', '"BytemarkTicketsCache", "TrimmedLogs"')))
    _caught(found, "namespace BytemarkTicketsCache is not the service's")
    found = _mutated(_body_edit(lambda body: body.replace('"DegradedRead", "function", "get-tickets"', '"DegradedRead", "function", "get-ticket"')))
    _caught(found, "DegradedRead must have the one dimension function = a function of the stack")
    found = _mutated(_body_edit(lambda body: body.replace('"FunctionName", "${PushLogFunction}"', '"FunctionName", "push-log"', 1)))
    _caught(found, "AWS/Lambda Invocations must have FunctionName = ${<a function of the stack>}")


def test_a_dashboard_missing_what_the_issue_asks_for_is_caught():
    found = _mutated(_body_edit(lambda body: re.sub(r'\[ \{ "id": "ratio".*?\} \],\n', "", body)))
    _caught(found, "the dashboard has no hit ratio")
    found = _mutated(_body_edit(lambda body: body.replace('"stat": "p99", "label": "get-tickets p99"', '"stat": "p90", "label": "get-tickets p90"')
                                .replace('"stat": "p99", "label": "update-tickets p99"', '"stat": "p90", "label": "x"')
                                .replace('"stat": "p99", "label": "push-log p99"', '"stat": "p90", "label": "y"')))
    _caught(found, "the dashboard does not chart DbLatency p99")
    found = _mutated(_body_edit(lambda body: body.replace('[ "AWS/Lambda", "Duration", "FunctionName", "${TtlSweeperFunction}", { "label": "ttl-sweeper" } ]',
                                                          '[ "AWS/Lambda", "Duration", "FunctionName", "${PushLogFunction}", { "label": "x" } ]')))
    _caught(found, "the dashboard does not chart TtlSweeperFunction's Lambda Duration p99")
    found = _mutated(_body_edit(lambda body: body.replace('"expression": "100 * FILL(hit, 0)', '"expression": "100 * FILL(hits, 0)')))
    _caught(found, "uses hits, which no line of the widget defines")


def test_a_dashboard_body_that_is_not_json_is_caught():
    found = _mutated(_body_edit(lambda body: body.replace('"period": 300,', '"period": ${SweepRateMinutes},', 1)))
    _caught(found, "the body is not JSON")


# --- The alarms ------------------------------------------------------------------------------------------

def test_a_missing_or_deaf_integrity_alarm_is_caught():
    def removed(resources, _):
        del resources["GetTicketsIntegrityMismatchAlarm"]
    found = _mutated(removed)
    _caught(found, "get-tickets's IntegrityMismatch is charted but has no alarm")
    _caught(found, "its alarm widget shows GetTicketsIntegrityMismatchAlarm, which is no alarm of the stack")

    def lenient(resources, _):
        resources["GetTicketsIntegrityMismatchAlarm"]["Properties"]["Threshold"] = 5
    _caught(_mutated(lenient), "get-tickets's IntegrityMismatch is charted but has no alarm")

    def misnamed(resources, _):
        resources["GetTicketsIntegrityMismatchAlarm"]["Properties"]["MetricName"] = "IntegrityMismatches"
    _caught(_mutated(misnamed), "alarm GetTicketsIntegrityMismatchAlarm watches IntegrityMismatches, which the code never emits")


def test_no_integrity_alarm_at_all_is_caught():
    def removed(resources, _):
        for name in ["GetTicketsIntegrityMismatchAlarm", "TtlSweeperIntegrityMismatchAlarm"]:
            del resources[name]
    _caught(_mutated(removed), "no alarm fires on an IntegrityMismatch")


def test_a_function_charted_for_integrity_mismatches_needs_its_own_alarm():
    # The audit's line on the dashboard without its alarm.
    def unalarmed(resources, _):
        del resources["TtlSweeperIntegrityMismatchAlarm"]
        props = resources["Dashboard"]["Properties"]
        props["DashboardBody"] = {"Fn::Sub": props["DashboardBody"]["Fn::Sub"].replace(' "${TtlSweeperIntegrityMismatchAlarm.Arn}",', "")}
    found = _mutated(unalarmed)
    assert found == ["ttl-sweeper's IntegrityMismatch is charted but has no alarm (Sum >= 1 over 5 minutes)"], found


def test_a_missing_dead_letter_or_5xx_alarm_is_caught():
    def no_dlq(resources, _):
        del resources["SweepDeadLetterAlarm"]
    _caught(_mutated(no_dlq), "TtlSweeperFunctionSweep's dead-letter queue TtlSweeperFunctionSweepQueue has no alarm")

    def other_queue(resources, _):
        resources["SweepDeadLetterAlarm"]["Properties"]["Dimensions"][0]["Value"] = "some-other-queue"
    _caught(_mutated(other_queue), "dead-letter queue TtlSweeperFunctionSweepQueue has no alarm")

    def no_5xx(resources, _):
        del resources["Api5xxRateAlarm"]
    _caught(_mutated(no_5xx), "no alarm on the API's 5xx rate")

    def on_4xx(resources, _):
        resources["Api5xxRateAlarm"]["Properties"]["Metrics"][0]["MetricStat"]["Metric"]["MetricName"] = "4xx"
    _caught(_mutated(on_4xx), "no alarm on the API's 5xx rate")


def test_an_alarm_left_off_the_dashboard_is_caught():
    def extra(resources, _):
        resources["PushLogRetriesAlarm"] = copy.deepcopy(resources["GetTicketsIntegrityMismatchAlarm"])
        resources["PushLogRetriesAlarm"]["Properties"].update(MetricName="WriteRetries", Dimensions=[{"Name": "function", "Value": "push-log"}])
    assert _mutated(extra) == ["dashboard Dashboard: alarm PushLogRetriesAlarm is missing from its alarm widget"]


# --- The edge --------------------------------------------------------------------------------------------

def _api(resources):
    return resources["TicketsApi"]["Properties"]


def test_access_logs_throttling_and_tracing_are_checked():
    def no_log(resources, _):
        del _api(resources)["AccessLogSettings"]
    _caught(_mutated(no_log), "the HTTP API writes no access log")

    def no_error(resources, _):
        settings = _api(resources)["AccessLogSettings"]
        settings["Format"] = settings["Format"].replace('"integrationError":"$context.integrationErrorMessage",', "")
    _caught(_mutated(no_error), "the access log has no integration error")

    def unquoted(resources, _):
        settings = _api(resources)["AccessLogSettings"]
        settings["Format"] = settings["Format"].replace('"$context.integrationLatency"', "$context.integrationLatency")
    _caught(_mutated(unquoted), "the access log format is not a JSON object of quoted values")

    def kept_forever(resources, _):
        del resources["ApiAccessLogs"]["Properties"]["RetentionInDays"]
    _caught(_mutated(kept_forever), "the access log group ApiAccessLogs has no retention")

    def unthrottled(resources, _):
        del _api(resources)["DefaultRouteSettings"]
    found = _mutated(unthrottled)
    _caught(found, "the HTTP API's default route has no ThrottlingRateLimit")
    _caught(found, "the HTTP API's default route has no ThrottlingBurstLimit")

    def untraced(_, template):
        del template["Globals"]["Function"]["Tracing"]
    found = _mutated(untraced)
    for function in wiring.function_ids(wiring.load_template()).values():
        _caught(found, "%s does not trace actively" % function)


def test_tracing_comes_with_the_xray_permissions():
    cfn = wiring.translate(wiring.load_template())
    roles = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::IAM::Role" and "lambda.amazonaws.com" in json.dumps(r)]
    assert len(roles) == 4
    for role in roles:
        assert "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess" in role["Properties"]["ManagedPolicyArns"]


# --- The connection budget -------------------------------------------------------------------------------

def test_the_budget_holds_for_the_defaults_and_every_samconfig_configuration():
    template = wiring.load_template()
    cfn = wiring.translate(template)
    configurations = connection_budget.configurations()
    assert configurations, "samconfig.toml has no configuration to check"
    for where, overrides in dict({"defaults": {}}, **configurations).items():
        values = connection_budget.parameter_values(template, overrides)
        reserved = connection_budget.reservations(cfn, values)
        assert all(count and count >= 1 for count in reserved.values()), (where, reserved)
        total = sum(reserved.values()) * connection_budget.per_environment()
        assert total <= int(values["MongoMaxConnections"]), (where, total)
        assert connection_budget.problems(template, cfn, set(), overrides, where) == []


def test_a_fleet_over_the_budget_is_caught():
    def bigger(_, template):
        template["Parameters"]["ReservedConcurrency"]["Default"] = 100
    found = _mutated(bigger)
    pool = connection_budget.pool_size()
    _caught(found, "the template's defaults: the fleet may hold")
    _caught(found, "GetTicketsFunction 100 x %d" % (pool + 1))
    _caught(found, "= %d MongoDB connections, over MongoMaxConnections = 1490" % (3 * 100 * (pool + 1) + (pool + 1)))


def test_a_samconfig_configuration_over_the_budget_is_caught():
    found = _mutated(lambda *_: None, {"samconfig.toml [small]": {"MongoMaxConnections": "500"}})
    _caught(found, "samconfig.toml [small]: the fleet may hold")
    assert not any(p.startswith("the template's defaults") for p in found)


def test_an_unreserved_function_is_caught():
    def unreserved(resources, _):
        del resources["PushLogFunction"]["Properties"]["ReservedConcurrentExecutions"]
    _caught(_mutated(unreserved), "PushLogFunction has no reserved concurrency, so nothing bounds its MongoDB connections")


def test_the_pool_size_is_read_from_the_code(tmp_path, monkeypatch):
    with open(connection_budget.STARTUP_RS) as f:
        source = f.read()
    bigger = tmp_path / "startup.rs"
    bigger.write_text(re.sub(r"max_pool_size\.get_or_insert\(\d+\)", "max_pool_size.get_or_insert(10)", source))
    monkeypatch.setattr(connection_budget, "STARTUP_RS", str(bigger))
    assert connection_budget.pool_size() == 10
    # 3 x 50 x 11 + 1 x 11 = 1661 > 1490
    _caught(wiring.problems(wiring.load_template(), {}), "= 1661 MongoDB connections, over MongoMaxConnections = 1490")


def test_a_burst_larger_than_a_function_can_take_is_caught():
    found = _mutated(lambda *_: None, {"samconfig.toml [bursty]": {"ApiThrottlingBurstLimit": "80"}})
    _caught(found, "samconfig.toml [bursty]: the API's burst limit 80 exceeds GetTicketsFunction's reserved concurrency 50")


def test_samconfig_overrides_are_read_in_either_form(tmp_path):
    config = tmp_path / "samconfig.toml"
    config.write_text('version = 0.1\n[default.deploy.parameters]\nparameter_overrides = ["A=1", "B=x=y"]\n'
                      '[prod.deploy.parameters]\nparameter_overrides = "A=2 MongoMaxConnections=3000"\n'
                      '[prod.build.parameters]\nbeta_features = true\n')
    assert connection_budget.configurations(str(config)) == {
        "samconfig.toml [default]": {"A": "1", "B": "x=y"},
        "samconfig.toml [prod]": {"A": "2", "MongoMaxConnections": "3000"},
    }


def test_the_readme_budget_table_is_the_arithmetic_of_the_code():
    with open(README) as f:
        text = f.read()
    table = re.search(r"<!-- budget-table -->\n(.*?)\n<!-- /budget-table -->", text, re.S)
    assert table, "infra/README.md has no budget table between <!-- budget-table --> markers"
    cfn = wiring.translate(wiring.load_template())
    each = connection_budget.per_environment()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.group(1).splitlines()[2:]]
    assert len(rows) >= 8
    for row in rows:
        budget, largest, total = (int(c.replace(",", "")) for c in row[2:5])
        expected, sharing, fixed = connection_budget.largest_shared_reservation(cfn, budget)
        assert (largest, total) == (expected, sharing * expected * each + fixed), row
    assert "pool of %d" % connection_budget.pool_size() in text
