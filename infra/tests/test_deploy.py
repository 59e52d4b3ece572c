"""Deploys the template's non-HTTP-API part to an emulated AWS and checks the deployed wiring.

The emulator is LocalStack (testcontainers) when a Docker daemon answers, else moto's server in-process;
the same tests run against either (DEPLOY_EMULATOR=moto|localstack forces one). LocalStack's community
edition has no HTTP API, so the API resources and everything referencing them are left out (the API
wiring is checked by translation in test_template.py). Expectations are read from the translated template,
resolved against the deployed stack, and compared with what the service APIs report.

Where the emulator cannot deploy something, the check says so with pytest.skip and the precise reason:
- a resource type its CloudFormation cannot create is left out of the stack (with what references it), and
  only the checks of that type skip (moto 5.2.5: AWS::CloudWatch::Alarm, AWS::Scheduler::Schedule);
- a property it drops (Emulator.gaps) skips that check only while the gap is real: the check still runs,
  and fails once the emulator deploys the property, so a skip never outlives its reason.
"""

import base64
import hashlib
import os
import socket
import sys
import threading
import time
import types

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import deploy_check  # noqa: E402
import wiring  # noqa: E402

# The alarms every function must have (the operational requirement, also checked by wiring.py).
REQUIRED_ALARMS = {"Errors", "Throttles"}


def _announce(request, line):
    """Shows `line` even when pytest captures output, so the run says which emulator it used and why."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="module")
def deployment(request):
    emulator, reason = deploy_check.start_emulator()
    if emulator is None:
        pytest.skip(reason)
    _announce(request, "[deploy] AWS emulator: %s, because %s" % (emulator.name, emulator.why))
    try:
        started = time.monotonic()
        deployed = deploy_check.deploy(emulator, wiring.translate(wiring.load_template()), wiring.PARAMETERS,
                                       wiring.SECRET_PARAMETER)
        _announce(request, "[deploy] stack %s: %d resources in %.1f s; left out for the HTTP API: %s"
                  % (deployed.stack_name, len(deployed.summaries), time.monotonic() - started,
                     ", ".join(sorted(deployed.removed["resources"]))))
        for resource_type, why in deployed.left_out.items():
            _announce(request, "[deploy] left out on %s: %s: %s" % (emulator.name, resource_type, why))
        yield deployed
    finally:
        emulator.stop()


def _client(deployment, service):
    return deployment.emulator.client(service)


def _require(deployment, resource_type):
    """The resources of `resource_type` to check, or a skip when this emulator could not create them."""
    assert deployment.resources(resource_type, deployment.template), "the template has no %s" % resource_type
    if resource_type in deployment.left_out:
        pytest.skip("%s; left out of the stack on %s (LocalStack deploys it on Docker hosts)"
                    % (deployment.left_out[resource_type], deployment.emulator.name))
    return deployment.resources(resource_type)


def _unless_gap(deployment, part, check):
    """Runs `check`; where the emulator is known to drop `part`, a failure skips, and a pass fails (stale gap)."""
    reason = deployment.emulator.gaps.get(part)
    if reason is None:
        check()
        return
    try:
        check()
    except AssertionError as error:
        pytest.skip("%s: %s (LocalStack covers it on Docker hosts); observed: %s"
                    % (part, reason, (str(error).splitlines() or [type(error).__name__])[0]))
    pytest.fail("%s now deploys %s as the template says: remove that gap from deploy_check" % (deployment.emulator.name, part))


def _configuration(deployment, logical_id):
    return _client(deployment, "lambda").get_function_configuration(FunctionName=deployment.physical[logical_id])


def _statements(document):
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else statements


def _as_list(value):
    return [value] if isinstance(value, str) else list(value)


def _touches_secrets(statement):
    if "NotAction" in statement:
        return True
    return any(a == "*" or a.lower().startswith("secretsmanager:") for a in _as_list(statement.get("Action", [])))


def _assert_reads_only_the_secret(statements, secret_arn, where):
    secret = [s for s in statements if s.get("Effect") == "Allow" and _touches_secrets(s)]
    assert secret, "%s cannot read the MongoDB URI secret" % where
    for statement in secret:
        assert "NotAction" not in statement, (where, statement)
        assert [a.lower() for a in _as_list(statement["Action"])] == ["secretsmanager:getsecretvalue"], (where, statement)
        assert _as_list(statement.get("Resource", [])) == [secret_arn], (where, statement)


def _policy_document(iam, arn):
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    return deploy_check.policy_document(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])


def _inline_policies(iam, role_name):
    names = [n for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name) for n in page["PolicyNames"]]
    return {n: deploy_check.policy_document(iam.get_role_policy(RoleName=role_name, PolicyName=n)["PolicyDocument"])
            for n in names}


# --- The subset (no emulator) ----------------------------------------------------------------------------

def test_the_subset_is_the_template_without_the_http_api_and_what_references_it():
    cfn = wiring.translate(wiring.load_template())
    api = deploy_check.http_api_resources(cfn)
    assert api, "the translated template has no HTTP API resources to leave out"
    subset, removed = deploy_check.without(cfn, api)
    gone = removed["resources"]
    assert api <= gone
    for logical_id in gone - api:
        resource = cfn["Resources"][logical_id]
        assert (deploy_check.references(resource) | set(_as_list(resource.get("DependsOn", [])))) & gone, logical_id
    for logical_id, resource in subset["Resources"].items():
        assert not deploy_check.references(resource) & gone, "%s still references %s" % (logical_id, gone)
    # What goes besides the API itself is exactly API Gateway's permissions to invoke the functions and what
    # watches the API: its 5xx alarm and the dashboard (both checked by translation in test_operations.py).
    invoke_permissions = {k for k, v in cfn["Resources"].items()
                          if v["Type"] == "AWS::Lambda::Permission" and v["Properties"].get("Principal") == "apigateway.amazonaws.com"}
    watchers = {k for k, v in cfn["Resources"].items()
                if v["Type"].startswith("AWS::CloudWatch::") and deploy_check.references(v) & api}
    assert invoke_permissions and watchers and gone == api | invoke_permissions | watchers
    assert set(subset.get("Outputs", {})) == {name for name, output in cfn["Outputs"].items()
                                              if not deploy_check.references(output) & api}
    assert removed["outputs"] and removed["parameters"]
    assert removed["parameters"] <= deploy_check.references({k: cfn["Resources"][k] for k in gone})
    assert not any(v["Type"].startswith(deploy_check.HTTP_API_TYPE_PREFIX) for v in subset["Resources"].values())
    # Everything else is deployed: every function, and every type the rest of the template declares.
    functions = {k for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    assert functions == set(wiring.function_ids(wiring.load_template()).values()) and functions <= set(subset["Resources"])


def test_references_are_followed_through_every_intrinsic_and_depends_on():
    template = {
        "Parameters": {"OnlyForB": {"Type": "String"}, "Kept": {"Type": "String"}},
        "Resources": {
            "Api": {"Type": "AWS::ApiGatewayV2::Api"},
            "B": {"Type": "X", "Properties": {"Url": {"Fn::Sub": "https://${Api}.example/${OnlyForB}"}}},
            "C": {"Type": "X", "Properties": {"Nested": [{"Arn": {"Fn::GetAtt": "B.Arn"}}]}},
            "D": {"Type": "X", "DependsOn": ["C"]},
            "Shadowed": {"Type": "X", "Properties": {"V": {"Fn::Sub": ["${Api}", {"Api": {"Ref": "Kept"}}]}}},
            "Escaped": {"Type": "X", "Properties": {"V": {"Fn::Sub": "${!Api}"}}},
            "Unrelated": {"Type": "X", "Properties": {"V": {"Fn::GetAtt": ["Shadowed", "Arn"]}}},
        },
        "Outputs": {"Gone": {"Value": {"Ref": "D"}}, "Stays": {"Value": {"Ref": "Escaped"}}},
    }
    subset, removed = deploy_check.without(template, {"Api"})
    assert removed == {"resources": {"Api", "B", "C", "D"}, "outputs": {"Gone"}, "parameters": {"OnlyForB"}}
    assert set(subset["Resources"]) == {"Shadowed", "Escaped", "Unrelated"} and set(subset["Outputs"]) == {"Stays"}
    assert "Api" in template["Resources"], "the input is not modified"


def test_the_stand_in_code_replaces_every_function_artifact():
    cfn = deploy_check.with_code(wiring.translate(wiring.load_template()), "b", "k.zip")
    codes = [r["Properties"]["Code"] for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert codes and all(code == {"S3Bucket": "b", "S3Key": "k.zip"} for code in codes)


def test_docker_is_detected_by_its_ping_quickly(monkeypatch):
    def serve(reply):
        listener = socket.create_server(("127.0.0.1", 0))

        def answer():
            connection, _ = listener.accept()
            with connection, listener:
                connection.recv(1024)
                connection.sendall(reply)
        threading.Thread(target=answer, daemon=True).start()
        return "tcp://127.0.0.1:%d" % listener.getsockname()[1]

    monkeypatch.setenv("DOCKER_HOST", serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"))
    assert deploy_check.docker_answers()[0]
    monkeypatch.setenv("DOCKER_HOST", serve(b"HTTP/1.1 500 Internal Server Error\r\n\r\n"))
    assert deploy_check.docker_answers() == (False, "Docker at %s did not answer /_ping" % os.environ["DOCKER_HOST"])
    started = time.monotonic()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    answers, why = deploy_check.docker_answers()
    assert not answers and "/nonexistent/docker.sock" in why and time.monotonic() - started < 1


def test_a_gap_skips_only_while_the_emulator_still_has_it():
    fake = types.SimpleNamespace(emulator=types.SimpleNamespace(name="emu", gaps={"part": "emu drops part"}))

    def dropped():
        raise AssertionError("part is missing")
    with pytest.raises(pytest.skip.Exception, match="emu drops part.*observed: part is missing"):
        _unless_gap(fake, "part", dropped)
    with pytest.raises(pytest.fail.Exception, match="remove that gap"):
        _unless_gap(fake, "part", lambda: None)
    with pytest.raises(AssertionError):
        _unless_gap(fake, "another part", dropped)


# --- The deployed stack ----------------------------------------------------------------------------------

def test_the_stack_holds_every_resource_it_was_given(deployment):
    summaries = deployment.summaries
    assert set(summaries) == set(deployment.deployed["Resources"]), (
        "not created: %s; not asked for: %s" % (sorted(set(deployment.deployed["Resources"]) - set(summaries)),
                                               sorted(set(summaries) - set(deployment.deployed["Resources"]))))
    for logical_id, summary in summaries.items():
        assert summary["ResourceStatus"] == "CREATE_COMPLETE" and summary.get("PhysicalResourceId"), summary
        assert summary["ResourceType"] == deployment.deployed["Resources"][logical_id]["Type"]
    # Missing from the API-free subset: only resources of the types this emulator cannot create.
    missing = set(deployment.template["Resources"]) - set(summaries)
    assert {deployment.template["Resources"][k]["Type"] for k in missing} == set(deployment.left_out)
    code = deploy_check.bootstrap_zip()
    for logical_id in deployment.resources("AWS::Lambda::Function"):
        sha = _client(deployment, "lambda").get_function(FunctionName=deployment.physical[logical_id])["Configuration"]["CodeSha256"]
        assert sha == base64.b64encode(hashlib.sha256(code).digest()).decode(), "%s runs the uploaded stand-in" % logical_id


def test_the_functions_run_with_the_template_configuration_and_environment(deployment):
    functions = deployment.resources("AWS::Lambda::Function")
    assert set(functions) == set(wiring.function_ids(wiring.load_template()).values())
    lam = _client(deployment, "lambda")
    for logical_id, resource in functions.items():
        props, config = resource["Properties"], _configuration(deployment, logical_id)
        assert config["FunctionName"] == deployment.resolve(props["FunctionName"])
        for field in ("Runtime", "Handler", "MemorySize", "Timeout"):
            assert config[field] == deployment.resolve(props[field]), (logical_id, field)
        assert config["Role"] == deployment.resolve(props["Role"]), logical_id
        # Lambda's variables are strings; moto 5.2.5 passes a Number parameter through as a number.
        variables = {k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()}
        assert variables == deployment.resolve(props["Environment"]["Variables"]), logical_id
        assert set(variables) == wiring.env_vars() - wiring.NOT_IN_TEMPLATE, logical_id
        assert not set(variables) & wiring.NOT_IN_TEMPLATE, logical_id
        secret_variables = [k for k, v in props["Environment"]["Variables"].items() if v == {"Ref": wiring.SECRET_PARAMETER}]
        assert secret_variables and all(variables[k] == deployment.secret_arn for k in secret_variables)
        # Every function is reserved: the connection budget rests on it.
        reserved = int(deployment.resolve(props["ReservedConcurrentExecutions"]))
        assert lam.get_function_concurrency(FunctionName=config["FunctionName"]).get("ReservedConcurrentExecutions") == reserved, logical_id


def test_the_functions_run_on_the_template_architecture(deployment):
    def check():
        for logical_id, resource in deployment.resources("AWS::Lambda::Function").items():
            expected = deployment.resolve(resource["Properties"]["Architectures"])
            assert _configuration(deployment, logical_id)["Architectures"] == expected, "%s: expected %s" % (logical_id, expected)
    _unless_gap(deployment, "function architectures", check)


def test_the_functions_trace_actively(deployment):
    def check():
        for logical_id, resource in deployment.resources("AWS::Lambda::Function").items():
            expected = deployment.resolve(resource["Properties"]["TracingConfig"])
            assert _configuration(deployment, logical_id).get("TracingConfig") == expected, "%s: expected %s" % (logical_id, expected)
    _unless_gap(deployment, "function tracing config", check)


def test_every_function_has_its_log_group_with_the_template_retention(deployment):
    logs = _client(deployment, "logs")
    groups = {g["logGroupName"]: g for page in logs.get_paginator("describe_log_groups").paginate() for g in page["logGroups"]}
    for logical_id, resource in deployment.resources("AWS::Logs::LogGroup").items():
        name = deployment.physical[logical_id]
        assert name == deployment.resolve(resource["Properties"]["LogGroupName"])
        assert name in groups, "log group %s was not created" % name
        assert "RetentionInDays" in resource["Properties"], "the template gives %s no retention" % logical_id
        assert groups[name].get("retentionInDays") == int(deployment.resolve(resource["Properties"]["RetentionInDays"])), name
    for logical_id, resource in deployment.resources("AWS::Lambda::Function").items():
        group = deployment.resolve(resource["Properties"]["LoggingConfig"]["LogGroup"])
        assert group in groups and groups[group].get("retentionInDays"), "%s logs to %s, without retention" % (logical_id, group)


def test_the_functions_log_to_their_group_in_the_template_format(deployment):
    def check():
        for logical_id, resource in deployment.resources("AWS::Lambda::Function").items():
            expected = deployment.resolve(resource["Properties"]["LoggingConfig"])
            config = _configuration(deployment, logical_id).get("LoggingConfig", {})
            assert {k: config.get(k) for k in expected} == expected, "%s: LoggingConfig %s, expected %s" % (logical_id, config, expected)
    _unless_gap(deployment, "function logging config", check)


def test_each_function_has_error_and_throttle_alarms(deployment):
    alarms = _require(deployment, "AWS::CloudWatch::Alarm")
    names = [deployment.physical[k] for k in alarms]
    found = {a["AlarmName"]: a for a in _client(deployment, "cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]}
    watched = {}
    for logical_id, resource in alarms.items():
        props, alarm = deployment.resolve(resource["Properties"]), found.get(deployment.physical[logical_id])
        assert alarm is not None, "alarm %s was not created" % logical_id
        for field, value in props.items():
            assert alarm.get(field) == value, (logical_id, field, alarm.get(field), value)
        for dimension in alarm["Dimensions"]:
            if dimension["Name"] == "FunctionName":
                watched.setdefault(dimension["Value"], set()).add(alarm["MetricName"])
    for logical_id in deployment.resources("AWS::Lambda::Function"):
        name = deployment.physical[logical_id]
        assert REQUIRED_ALARMS <= watched.get(name, set()), "%s has alarms on %s only" % (name, watched.get(name))


def test_the_schedule_invokes_the_sweeper_with_retries_and_a_dead_letter_queue(deployment):
    schedules = _require(deployment, "AWS::Scheduler::Schedule")
    sweeper = wiring.function_ids(wiring.load_template())["ttl-sweeper"]
    scheduler = _client(deployment, "scheduler")
    for logical_id, resource in schedules.items():
        props = resource["Properties"]
        schedule = scheduler.get_schedule(Name=deployment.physical[logical_id].rsplit("/", 1)[-1])
        target = schedule["Target"]
        assert deploy_check.getatt_target(props["Target"]["Arn"]) == sweeper
        assert target["Arn"] == deployment.attributes[(sweeper, "Arn")] == _configuration(deployment, sweeper)["FunctionArn"]
        assert schedule["ScheduleExpression"] == deployment.resolve(props["ScheduleExpression"])
        assert schedule["FlexibleTimeWindow"] == props["FlexibleTimeWindow"]
        assert schedule.get("State", "ENABLED") == "ENABLED"
        assert target["Input"] == props["Target"]["Input"]
        assert target.get("RetryPolicy") and target["RetryPolicy"] == props["Target"]["RetryPolicy"]
        queue = deploy_check.getatt_target(props["Target"]["DeadLetterConfig"]["Arn"])
        assert target.get("DeadLetterConfig", {}).get("Arn") == deployment.attributes[(queue, "Arn")]
        assert target["RoleArn"] == deployment.attributes[(deploy_check.getatt_target(props["Target"]["RoleArn"]), "Arn")]


def test_the_schedule_role_may_only_invoke_the_sweeper_and_dead_letter(deployment):
    # Deployed on either emulator: the role and the queue do not depend on the schedule.
    schedules = deployment.resources("AWS::Scheduler::Schedule", deployment.template)
    assert schedules
    iam = _client(deployment, "iam")
    for resource in schedules.values():
        target = resource["Properties"]["Target"]
        role_id = deploy_check.getatt_target(target["RoleArn"])
        role = deployment.template["Resources"][role_id]["Properties"]
        deployed = _inline_policies(iam, deployment.physical[role_id])
        assert deployed == {p["PolicyName"]: deployment.resolve(p["PolicyDocument"]) for p in role.get("Policies", [])}, \
            "the scheduler's role has inline policies %s" % deployed
        attached = iam.list_attached_role_policies(RoleName=deployment.physical[role_id])["AttachedPolicies"]
        assert attached == [] == role.get("ManagedPolicyArns", [])
        allowed = {deployment.attributes[(deploy_check.getatt_target(arn), "Arn")]
                   for arn in (target["Arn"], target["DeadLetterConfig"]["Arn"])}
        resources = {r for doc in deployed.values() for s in _statements(doc) for r in _as_list(s.get("Resource", []))}
        assert resources == allowed, "the scheduler's role reaches %s" % resources


def test_the_stack_grants_nothing_on_secrets_but_reading_the_secret(deployment):
    iam = _client(deployment, "iam")
    statements = []
    for logical_id, resource in deployment.resources("AWS::IAM::ManagedPolicy").items():
        document = _policy_document(iam, deployment.physical[logical_id])
        assert document == deployment.resolve(resource["Properties"]["PolicyDocument"]), logical_id
        statements += _statements(document)
    for logical_id in deployment.resources("AWS::IAM::Role"):
        for document in _inline_policies(iam, deployment.physical[logical_id]).values():
            statements += _statements(document)
    _assert_reads_only_the_secret(statements, deployment.secret_arn, "the stack's policies")


def test_each_function_role_can_read_the_secret_and_nothing_more_on_secrets(deployment):
    iam = _client(deployment, "iam")
    roles = {}
    for logical_id, resource in deployment.resources("AWS::Lambda::Function").items():
        role_id = deploy_check.getatt_target(resource["Properties"]["Role"])
        assert _configuration(deployment, logical_id)["Role"] == deployment.attributes[(role_id, "Arn")]
        role = deployment.deployed["Resources"][role_id]["Properties"]
        inline = _inline_policies(iam, deployment.physical[role_id])
        assert inline == {p["PolicyName"]: deployment.resolve(p["PolicyDocument"]) for p in role.get("Policies", [])}, \
            "%s's role has inline policies %s" % (logical_id, inline)
        roles[logical_id] = (role_id, role, inline)

    def check():
        for logical_id, (role_id, role, inline) in roles.items():
            name = deployment.physical[role_id]
            attached = [p["PolicyArn"] for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
                        for p in page["AttachedPolicies"]]
            assert sorted(attached) == sorted(deployment.resolve(role.get("ManagedPolicyArns", []))), \
                "%s's role has managed policies %s" % (logical_id, attached)
            statements = [s for arn in attached for s in _statements(_policy_document(iam, arn))]
            statements += [s for document in inline.values() for s in _statements(document)]
            _assert_reads_only_the_secret(statements, deployment.secret_arn, "%s's role" % logical_id)
    _unless_gap(deployment, "role managed policies", check)
