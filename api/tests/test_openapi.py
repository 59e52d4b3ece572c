"""The committed contract (api/openapi.json): a valid OpenAPI 3.1 document whose operations are exactly the
route table's (functions/routes.json). That it is what the code generates is checked by a Rust test
(`lambda-adapter`, openapi::tests); `make openapi` regenerates it."""

import copy
import json
import pathlib

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = json.loads((ROOT / "api" / "openapi.json").read_text())
ROUTES = json.loads((ROOT / "functions" / "routes.json").read_text())["routes"]


def test_the_contract_is_valid_openapi_3_1():
    assert SPEC["openapi"].startswith("3.1.")
    validate(SPEC)


def test_the_validator_refuses_a_broken_contract():
    broken = copy.deepcopy(SPEC)
    broken["paths"]["/v1/users/{user_id}/tickets"]["get"]["parameters"][0]["in"] = "body"
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_paths_and_methods_are_the_route_table():
    in_spec = {(method.upper(), path, op["operationId"]) for path, item in SPEC["paths"].items() for method, op in item.items()}
    in_table = {(r["method"], r["path"], r["operation"]) for r in ROUTES}
    assert in_spec == in_table


def test_each_operation_is_secured_as_its_route_and_documents_its_success():
    for route in ROUTES:
        operation = SPEC["paths"][route["path"]][route["method"].lower()]
        schemes = {name for requirement in operation["security"] for name in requirement}
        assert schemes == ({"jwt"} if route["auth"] == "jwt" else {"sigv4", "jwt"}), route
        assert str(route["success"]) in operation["responses"], route


def test_every_error_response_has_the_error_shape():
    error_body = SPEC["components"]["schemas"]["ErrorBody"]
    assert error_body["required"] == ["error"]
    detail = SPEC["components"]["schemas"]["ErrorDetail"]
    assert {"code", "message"} <= set(detail["required"])
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or status == "429":
                    continue
                text = json.dumps(response["content"]["application/json"]["schema"])
                assert "#/components/schemas/ErrorBody" in text and '"enum"' in text, (method, path, status)
            assert "Retry-After" in operation["responses"]["503"]["headers"]
            assert "Allow" in operation["responses"]["405"]["headers"]
