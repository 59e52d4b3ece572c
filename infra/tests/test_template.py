"""The SAM template: lint-clean, and wired to the code (routes, authorizers, schedule, IAM, environment)."""

import copy
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import wiring  # noqa: E402


def test_cfn_lint_reports_nothing():
    cfn_lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
    result = subprocess.run([cfn_lint, wiring.TEMPLATE], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_template_is_wired_as_the_code_expects():
    assert wiring.problems(wiring.load_template()) == []


def test_the_expectations_come_from_the_code():
    assert len(wiring.routes()) == 5
    assert {"MONGODB_URI_SECRET_ARN", "CACHE_TTL_SECONDS", "LOG_CAP", "AUTH_MODE"} <= wiring.env_vars()


def _mutated(change):
    template = copy.deepcopy(wiring.load_template())
    change(template["Resources"], template)
    return wiring.problems(template)


def test_a_route_renamed_in_the_template_only_is_caught():
    def rename(resources, _):
        resources["PushLogFunction"]["Properties"]["Events"]["PushLog"]["Properties"]["Path"] = "/v1/users/{user_id}/log"
    found = _mutated(rename)
    assert any("missing from the template" in p for p in found), found
    assert any("not in functions/routes.json" in p for p in found), found


def test_a_route_to_the_wrong_function_or_authorizer_is_caught():
    def swap(resources, _):
        event = resources["GetTicketsFunction"]["Properties"]["Events"]["GetTickets"]["Properties"]
        event["Auth"] = {"Authorizer": "AWS_IAM"}
    assert any("guarded by ['AWS_IAM'], expected jwt" in p for p in _mutated(swap))

    def move(resources, _):
        events = resources["GetTicketsFunction"]["Properties"].pop("Events")
        resources["PushLogFunction"]["Properties"]["Events"].update(events)
    assert any("does not invoke get-tickets" in p for p in _mutated(move))


def test_local_auth_or_a_plain_uri_in_the_environment_is_caught():
    def local(_, template):
        template["Globals"]["Function"]["Environment"]["Variables"]["AUTH_MODE"] = "local"
    assert any("sets AUTH_MODE" in p for p in _mutated(local))

    def missing(_, template):
        del template["Globals"]["Function"]["Environment"]["Variables"]["LOG_CAP"]
    assert any("does not set LOG_CAP" in p for p in _mutated(missing))


def test_broad_secret_access_is_caught():
    def wildcard(resources, _):
        resources["ReadMongoUriPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Resource"] = "*"
    assert any("not only the secret parameter" in p for p in _mutated(wildcard))


def test_a_schedule_without_the_sweeper_is_caught():
    def retarget(resources, _):
        sweep = resources["TtlSweeperFunction"]["Properties"].pop("Events")
        resources["PushLogFunction"]["Properties"]["Events"].update(sweep)
    assert any("does not target the sweeper" in p for p in _mutated(retarget))


def test_indexes_made_at_deployment_by_the_sweeper_are_checked():
    def removed(resources, _):
        del resources["DatabaseIndexes"]
    assert any("expected one custom resource served by the sweeper" in p for p in _mutated(removed))

    def retargeted(resources, _):
        resources["DatabaseIndexes"]["Properties"]["ServiceToken"] = {"Fn::GetAtt": ["PushLogFunction", "Arn"]}
    assert any("expected one custom resource served by the sweeper" in p for p in _mutated(retargeted))

    def other_collection(resources, _):
        resources["DatabaseIndexes"]["Properties"]["Collection"] = "tickets"
    assert any("Collection is tickets, not the functions' MONGODB_COLLECTION" in p for p in _mutated(other_collection))

    def impatient(resources, _):
        resources["DatabaseIndexes"]["Properties"]["ServiceTimeout"] = 60
    assert any("must cover the sweeper's timeout (300 s)" in p for p in _mutated(impatient))


def test_a_first_contact_budget_that_outlasts_the_function_is_caught():
    def slow(_, template):
        template["Globals"]["Function"]["Environment"]["Variables"]["MONGODB_FIRST_CONNECT_MS"] = "9000"
    found = _mutated(slow)
    assert any("get-tickets: MONGODB_FIRST_CONNECT_MS 9000 + MONGODB_TIMEOUT_MS 3000 + 1000 ms to reply exceed its 10000 ms timeout" in p
               for p in found), found


def test_an_audit_schedule_without_the_task_the_code_reads_is_caught():
    def misspelled(resources, _):
        resources["TtlSweeperFunction"]["Properties"]["Events"]["Audit"]["Properties"]["Input"] = '{"task": "audits"}'
    assert any("expected a sweep, 'audit' and 'merge_duplicates'" in p for p in _mutated(misspelled))

    def dropped(resources, _):
        del resources["TtlSweeperFunction"]["Properties"]["Events"]["Audit"]
    assert any("expected three EventBridge Scheduler schedules" in p for p in _mutated(dropped))


def test_a_merge_schedule_without_the_task_the_code_reads_is_caught():
    def misspelled(resources, _):
        resources["TtlSweeperFunction"]["Properties"]["Events"]["MergeDuplicates"]["Properties"]["Input"] = '{"task": "merge"}'
    assert any("expected a sweep, 'audit' and 'merge_duplicates'" in p for p in _mutated(misspelled))
