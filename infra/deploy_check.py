"""Deploys the non-HTTP-API part of the SAM template to an AWS emulator, for infra/tests/test_deploy.py.

LocalStack's community edition has no HTTP API (apigatewayv2), so the deployable subset is the translated
template (`wiring.translate`) minus every `AWS::ApiGatewayV2::*` resource and, transitively, everything
that references one (Ref, Fn::GetAtt, Fn::Sub, DependsOn): the API Gateway invoke permissions and the
`ApiUrl` output, and the parameters only they used. The same closure drops resource types the chosen
emulator cannot create, so a stack never "completes" with a resource silently missing.

The emulator is LocalStack (testcontainers) when a Docker daemon answers, else moto's server in-process.
"""

import ast
import copy
import io
import json
import os
import re
import socket
import time
import zipfile

HTTP_API_TYPE_PREFIX = "AWS::ApiGatewayV2::"
# The functions deployed here are stand-ins that cannot answer CloudFormation, so a custom resource would
# only wait for its ServiceTimeout and fail. It is checked by translation (test_template.py) and its handler
# by tests/tests/indexes.rs.
CUSTOM_RESOURCE_REASON = ("served by a function, and the deploy check's functions are stand-ins that cannot answer "
                          "CloudFormation (checked by translation in test_template.py and by tests/tests/indexes.rs)")
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": REGION}
# The image the Rust end-to-end test uses (testcontainers-modules' LocalStack default), so one pull serves both.
LOCALSTACK_IMAGE = os.environ.get("LOCALSTACK_IMAGE", "localstack/localstack:4.5")
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


# --- The deployable subset -------------------------------------------------------------------------------

def _sub_names(text):
    """Names a Fn::Sub string interpolates: `${Name}` and `${Name.Attribute}`, not `${!Literal}`."""
    return {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}


def references(node):
    """Every logical name (resource or parameter) `node` refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value.split(".")[0] if isinstance(value, str) else value[0]
                if isinstance(target, str):
                    found.add(target)
            elif key == "Fn::Sub":
                if isinstance(value, str):
                    found |= _sub_names(value)
                else:
                    text, variables = value[0], value[1] if len(value) > 1 else {}
                    found |= _sub_names(text) - set(variables)
                    found |= references(variables)
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def _depends_on(resource):
    depends = resource.get("DependsOn", [])
    return {depends} if isinstance(depends, str) else set(depends)


def without(template, seeds):
    """A copy of `template` without the resources `seeds` and everything that references them, transitively.

    Returns (template, removed) where removed maps "resources", "outputs" and "parameters" to what went:
    outputs that referenced a removed resource, parameters nothing left refers to.
    """
    template = copy.deepcopy(template)
    resources = template["Resources"]
    removed = set(seeds) & set(resources)
    changed = True
    while changed:
        changed = False
        for logical_id, resource in resources.items():
            if logical_id in removed:
                continue
            if (references(resource) | _depends_on(resource)) & removed:
                removed.add(logical_id)
                changed = True
    for logical_id in removed:
        del resources[logical_id]
    outputs = template.get("Outputs", {})
    gone_outputs = {name for name, output in outputs.items() if references(output) & removed}
    for name in gone_outputs:
        del outputs[name]
    if not outputs:
        template.pop("Outputs", None)
    used = references({k: template.get(k) for k in ("Resources", "Outputs", "Conditions")})
    parameters = template.get("Parameters", {})
    gone_parameters = set(parameters) - used
    for name in gone_parameters:
        del parameters[name]
    return template, {"resources": removed, "outputs": gone_outputs, "parameters": gone_parameters}


def http_api_resources(template):
    return {k for k, v in template["Resources"].items() if v["Type"].startswith(HTTP_API_TYPE_PREFIX)}


def bootstrap_zip():
    """A stand-in for the cargo-lambda artifact: one executable `bootstrap`. Never invoked by the test."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o100755 << 16
        archive.writestr(info, "#!/bin/sh\necho 'deploy check stand-in, not the real function' >&2\nexit 1\n")
    return buffer.getvalue()


def with_code(template, bucket, key):
    """Points every function at the uploaded stand-in (`translate` leaves a placeholder S3 location)."""
    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            resource["Properties"]["Code"] = {"S3Bucket": bucket, "S3Key": key}
    return template


# --- Resolving the template's values, to compare with what was deployed ----------------------------------

def parameter_values(template, given):
    """Every parameter's value as a string, as CloudFormation resolves it: the given one, else the default."""
    values = {}
    for name, spec in template.get("Parameters", {}).items():
        value = given.get(name, spec.get("Default"))
        if value is None:
            raise KeyError("parameter %s has no default and no value was given" % name)
        values[name] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return values


_SUB = re.compile(r"\$\{([^!}][^}]*)\}")


def resolve(node, names, attributes):
    """`node` with Ref, Fn::GetAtt and Fn::Sub (string form) replaced by deployed values: `names` maps
    parameters, pseudo parameters and resources (physical ids) for Ref; `attributes` maps (logical id,
    attribute) for GetAtt. Any other intrinsic raises, so an expectation is never guessed."""
    if isinstance(node, list):
        return [resolve(item, names, attributes) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, value), = node.items()
        if key == "Ref":
            return names[value]
        if key == "Fn::GetAtt":
            logical_id, attribute = value.split(".", 1) if isinstance(value, str) else value
            return attributes[(logical_id, attribute)]
        if key == "Fn::Sub" and isinstance(value, str):
            def one(match):
                name = match.group(1)
                return attributes[tuple(name.split(".", 1))] if "." in name else names[name]
            return _SUB.sub(one, value)
        if key.startswith("Fn::"):
            raise ValueError("cannot resolve %r" % (node,))
    return {key: resolve(value, names, attributes) for key, value in node.items()}


def policy_document(value):
    """A policy document as a dict. botocore decodes IAM's URL-encoded JSON; moto 5.2.5 stores the inline
    policies of a CloudFormation role as the Python repr of the document (`str(dict)`), read back here as
    such (literal_eval evaluates literals only) so their content can still be checked."""
    if isinstance(value, dict):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return ast.literal_eval(value)


def getatt_target(node, attribute="Arn"):
    """The logical id of `{"Fn::GetAtt": [id, attribute]}`."""
    value = node.get("Fn::GetAtt") if isinstance(node, dict) else None
    if isinstance(value, str):
        value = value.split(".", 1)
    if not value or value[1] != attribute:
        raise ValueError("expected Fn::GetAtt %s, got %r" % (attribute, node))
    return value[0]


# --- The emulator ----------------------------------------------------------------------------------------

def docker_answers(timeout=0.5):
    """(True, where) when a Docker daemon answers GET /_ping quickly, else (False, why not)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(host[len("unix://"):])
        elif host.startswith("tcp://"):
            address, _, port = host[len("tcp://"):].rstrip("/").rpartition(":")
            sock = socket.create_connection((address, int(port)), timeout=timeout)
            sock.settimeout(timeout)
        else:
            return False, "unsupported DOCKER_HOST %s" % host
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(1024).decode("latin-1")
    except (OSError, ValueError) as error:
        return False, "Docker at %s: %s" % (host, error)
    if reply.startswith("HTTP/1.") and " 200 " in reply.split("\r\n", 1)[0]:
        return True, "Docker answers at %s" % host
    return False, "Docker at %s did not answer /_ping" % host


class Emulator:
    """An AWS endpoint; which resource types its CloudFormation cannot create (type → reason); and `gaps`,
    properties its CloudFormation creates the resource without (part → reason)."""

    def __init__(self, name, why, endpoint, stop, unsupported, gaps=None):
        self.name, self.why, self.endpoint = name, why, endpoint
        self._stop, self._unsupported, self.gaps = stop, unsupported, gaps or {}

    def client(self, service):
        import boto3
        return boto3.client(service, endpoint_url=self.endpoint, **CREDENTIALS)

    def unsupported(self, resource_types):
        """{type: reason} for the types this emulator's CloudFormation would not create."""
        return {t: r for t in sorted(set(resource_types)) if (r := self._unsupported(t))}

    def stop(self):
        self._stop()


def _moto_unsupported(resource_type):
    # moto warns and skips a type it has no CloudFormation model for, yet reports CREATE_COMPLETE; its own
    # lookup says which types those are, so the stack leaves them out and their checks skip.
    from moto import __version__
    from moto.cloudformation.parsing import resource_class_from_type
    if resource_class_from_type(resource_type) is None:
        return "moto %s's CloudFormation has no model for %s (it would skip it silently)" % (__version__, resource_type)
    return None


def _moto_gaps():
    # Found by experiment and in moto's source (create_from_cloudformation_json). A check hit by one of these
    # skips on moto only while the gap is real: it still runs, and fails if moto starts deploying the property.
    from moto import __version__
    moto = "moto " + __version__
    return {
        "function architectures": moto + " builds a CloudFormation Lambda function from a fixed property list "
                                         "without Architectures (it reports the x86_64 default)",
        "function logging config": moto + " does not model Lambda LoggingConfig (absent from the configuration)",
        "function tracing config": moto + " builds a CloudFormation Lambda function from a fixed property list "
                                          "without TracingConfig (it reports PassThrough)",
        "role managed policies": moto + " creates a CloudFormation IAM role without its ManagedPolicyArns "
                                        "(only inline Policies are attached)",
    }


def start_moto(why):
    import logging
    import urllib.request
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://%s:%d" % server.get_host_and_port()

    def stop():
        # moto's backends live in this process: leave nothing behind for other tests.
        urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset", method="POST"), timeout=10)
        server.stop()
    return Emulator("moto", why, endpoint, stop, _moto_unsupported, _moto_gaps())


def start_localstack(why):
    from testcontainers.community.localstack import LocalStackContainer
    container = LocalStackContainer(image=LOCALSTACK_IMAGE, region_name=REGION)
    # Fail the deployment on a type LocalStack cannot create, instead of its default (mock it, succeed).
    container.with_env("CFN_IGNORE_UNSUPPORTED_RESOURCE_TYPES", "0")
    container.start(timeout=180)
    return Emulator("LocalStack (%s)" % LOCALSTACK_IMAGE, why, container.get_url(), container.stop, lambda _: None)


def start_emulator():
    """LocalStack when Docker answers, else moto; DEPLOY_EMULATOR=moto|localstack forces one.

    Returns (emulator, None), or (None, reason) when the forced LocalStack has no Docker.
    """
    forced = os.environ.get("DEPLOY_EMULATOR", "").lower()
    if forced == "moto":
        return start_moto("DEPLOY_EMULATOR=moto"), None
    docker, why = docker_answers()
    if docker:
        return start_localstack(why), None
    if forced == "localstack":
        return None, "DEPLOY_EMULATOR=localstack but no Docker: " + why
    return start_moto("no Docker for LocalStack (%s)" % why), None


# --- Deploying -------------------------------------------------------------------------------------------

def create_stack(cloudformation, name, template, parameters, timeout):
    """Creates the stack and waits for CREATE_COMPLETE; raises with every failed resource's reason."""
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template, separators=(",", ":")),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())],
        Capabilities=CAPABILITIES,
        OnFailure="DO_NOTHING",
    )
    deadline = time.monotonic() + timeout
    while True:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise AssertionError("stack %s still %s after %d s" % (name, status, timeout))
        time.sleep(0.5)
    if status != "CREATE_COMPLETE":
        events = cloudformation.describe_stack_events(StackName=name)["StackEvents"]
        reasons = ["%s (%s): %s %s" % (e["LogicalResourceId"], e.get("ResourceType"), e["ResourceStatus"],
                                       e.get("ResourceStatusReason", ""))
                   for e in reversed(events) if "FAILED" in e["ResourceStatus"]]
        raise AssertionError("stack %s ended %s (%s):\n%s" % (name, status, stack.get("StackStatusReason", ""),
                                                            "\n".join(reasons) or "no failure events"))
    return stack


class Deployment:
    """A deployed stack: `template` is the API-free subset (the expectations), `deployed` what was sent;
    `left_out` maps each type the emulator could not create to the reason."""

    def __init__(self, emulator, template, deployed, removed, left_out, stack_name, parameters, secret_arn):
        self.emulator, self.template, self.deployed, self.removed = emulator, template, deployed, removed
        self.left_out, self.stack_name, self.parameters, self.secret_arn = left_out, stack_name, parameters, secret_arn
        self.summaries, self.physical, self.attributes = {}, {}, {}

    def resources(self, resource_type, template=None):
        return {k: v for k, v in (template or self.deployed)["Resources"].items() if v["Type"] == resource_type}

    def names(self):
        return dict(self.parameters, **self.physical, **{"AWS::StackName": self.stack_name, "AWS::Region": REGION})

    def resolve(self, node):
        return resolve(node, self.names(), self.attributes)


def deploy(emulator, translated, given_parameters, secret_parameter, stack_name="ticket-cache-deploy-check",
           timeout=600):
    """Deploys the API-free part of `translated` that `emulator` can create; returns a Deployment.

    The secret is created first (its ARN becomes `secret_parameter`), and every function's code is a
    stand-in uploaded to S3, so no build is needed.
    """
    template, removed = without(translated, http_api_resources(translated))
    types = {r["Type"] for r in template["Resources"].values()}
    left_out = emulator.unsupported(types)
    left_out.update({t: CUSTOM_RESOURCE_REASON for t in sorted(types)
                     if t.startswith("Custom::") or t == "AWS::CloudFormation::CustomResource"})
    deployed, _ = without(template, {k for k, r in template["Resources"].items() if r["Type"] in left_out})
    bucket, key = stack_name + "-code", "bootstrap.zip"
    emulator.client("s3").create_bucket(Bucket=bucket)
    emulator.client("s3").put_object(Bucket=bucket, Key=key, Body=bootstrap_zip())
    secret_arn = emulator.client("secretsmanager").create_secret(
        Name=stack_name + "/mongodb-uri", SecretString='{"uri": "mongodb://deploy-check.invalid:27017"}')["ARN"]
    deployed = with_code(deployed, bucket, key)
    given = {k: v for k, v in dict(given_parameters, **{secret_parameter: secret_arn}).items()
             if k in deployed.get("Parameters", {})}
    parameters = parameter_values(deployed, given)
    deployment = Deployment(emulator, template, deployed, removed, left_out, stack_name, parameters, secret_arn)
    cloudformation = emulator.client("cloudformation")
    create_stack(cloudformation, stack_name, deployed, given, timeout)
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            deployment.summaries[summary["LogicalResourceId"]] = summary
    deployment.physical = {k: s.get("PhysicalResourceId") for k, s in deployment.summaries.items()}
    # The ARNs the template's Fn::GetAtt would yield, read back from the services.
    for logical_id in deployment.resources("AWS::Lambda::Function"):
        arn = emulator.client("lambda").get_function_configuration(FunctionName=deployment.physical[logical_id])["FunctionArn"]
        deployment.attributes[(logical_id, "Arn")] = arn
    for logical_id in deployment.resources("AWS::SQS::Queue"):
        arn = emulator.client("sqs").get_queue_attributes(QueueUrl=deployment.physical[logical_id],
                                                          AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        deployment.attributes[(logical_id, "Arn")] = arn
        deployment.attributes[(logical_id, "QueueName")] = arn.rsplit(":", 1)[-1]
    for logical_id in deployment.resources("AWS::IAM::Role"):
        arn = emulator.client("iam").get_role(RoleName=deployment.physical[logical_id])["Role"]["Arn"]
        deployment.attributes[(logical_id, "Arn")] = arn
    return deployment
