"""Checks the protection at the edge in the translated template: the HTTP API's JSON access log (in a log
group with retention), its default route throttling, and active tracing on every function with the X-Ray
permissions SAM adds for it."""

import json
import re

# What an access log line must say to find a request and tell where it failed. Each entry lists the
# equivalent $context variables (API Gateway documents both spellings).
ACCESS_LOG_FIELDS = {
    "request id": ("$context.requestId", "$context.extendedRequestId"),
    "route key": ("$context.routeKey",),
    "status": ("$context.status",),
    "integration latency": ("$context.integrationLatency", "$context.integration.latency"),
    "response latency": ("$context.responseLatency",),
    "integration error": ("$context.integrationErrorMessage", "$context.integration.error"),
}
XRAY_POLICY = "AWSXrayWriteOnlyAccess"


def _getatt_target(value, attribute="Arn"):
    target = value.get("Fn::GetAtt") if isinstance(value, dict) else None
    if isinstance(target, str):
        target = target.split(".", 1)
    return target[0] if target and len(target) == 2 and target[1] == attribute else None


def access_log_problems(settings, resources):
    if not settings:
        return ["the HTTP API writes no access log (AccessLogSettings)"]
    found = []
    group_id = _getatt_target(settings.get("DestinationArn"))
    group = resources.get(group_id, {})
    if group.get("Type") != "AWS::Logs::LogGroup":
        found.append("the access log goes to %s, not a log group of the stack" % settings.get("DestinationArn"))
    elif "RetentionInDays" not in group.get("Properties", {}):
        found.append("the access log group %s has no retention" % group_id)
    text = settings.get("Format")
    try:
        # A variable can be empty ("-") where no integration ran, so every value must be a quoted string.
        line = json.loads(text)
        if not isinstance(line, dict) or not all(isinstance(v, str) for v in line.values()):
            raise ValueError("not an object of strings")
    except (TypeError, ValueError) as error:
        return found + ["the access log format is not a JSON object of quoted values: %s" % error]
    used = {v for value in line.values() for v in re.findall(r"\$context\.[A-Za-z0-9.]+", value)}
    for field, variables in ACCESS_LOG_FIELDS.items():
        if not used & set(variables):
            found.append("the access log has no %s (%s)" % (field, " or ".join(variables)))
    return found


def problems(cfn):
    resources = cfn["Resources"]
    found = []
    stages = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::ApiGatewayV2::Stage"}
    if not stages:
        found.append("the HTTP API has no stage to log and throttle")
    for stage in stages.values():
        found += access_log_problems(stage.get("AccessLogSettings"), resources)
        route = stage.get("DefaultRouteSettings", {})
        for limit in ("ThrottlingRateLimit", "ThrottlingBurstLimit"):
            if limit not in route:
                found.append("the HTTP API's default route has no %s" % limit)
    for logical_id, function in resources.items():
        if function["Type"] != "AWS::Lambda::Function":
            continue
        props = function["Properties"]
        if props.get("TracingConfig", {}).get("Mode") != "Active":
            found.append("%s does not trace actively (TracingConfig Mode Active)" % logical_id)
            continue
        role = resources.get(_getatt_target(props.get("Role")), {}).get("Properties", {})
        if XRAY_POLICY not in json.dumps(role.get("ManagedPolicyArns", [])):
            found.append("%s traces but its role lacks %s" % (logical_id, XRAY_POLICY))
    return found
