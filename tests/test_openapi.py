"""The OpenAPI document: every route and method of the app and nothing else, a valid OpenAPI
3.1 document, and examples that are what they describe.

The app is built over a pool that is never opened: building it reaches no database.
(tests/test_openapi_conformance.py holds the running service to the document.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.inspect
import falcon.testing
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from janus.app import create_app
from janus.configs import MAX_VERSION
from janus.dashboard import FILES as DASHBOARD_FILES
from janus.db.pool import make_pool
from janus.routes import openapi_document, routes
from janus.schemas.requests import MAX_DEPENDENCIES_PER_CONFIG, MAX_TENANT_OVERRIDES
from janus.settings import Settings
from tests.support.seed import SEED_BATCH, SEED_SINGLE

TOKEN = "t" * 32
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# falcon's `{name:converter(args)}` in a route's path; OpenAPI writes `{name}`.
FALCON_FIELD = re.compile(r"\{(\w+)(?::([^}]+))?\}")
# The path parameter's schema for each converter janus/routes.py uses, and for none.
CONVERTER_SCHEMAS: dict[str | None, dict[str, Any]] = {
    None: {"type": "string"},
    "uuid": {"type": "string", "format": "uuid"},
    f"int(min=1, max={MAX_VERSION})": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
}


def _settings(service_token: str | None = None) -> Settings:
    # Never connected to: create_app only builds the pool.
    return Settings(
        database_url="postgresql://janus@127.0.0.1:1/unused", service_token=service_token
    )


def _app(settings: Settings) -> falcon.App[falcon.Request, falcon.Response]:
    return create_app(settings, make_pool(settings))


def _document(settings: Settings) -> dict[str, Any]:
    return openapi_document(
        routes(settings.max_batch_jobs), service_token=settings.service_token is not None
    )


def _app_routes(
    app: falcon.App[falcon.Request, falcon.Response],
) -> Iterator[tuple[str, str, str]]:
    """(method, OpenAPI path, falcon path) of every method the app's resources answer.

    Falcon's own responders (OPTIONS, and 405 for the methods a resource lacks) are not
    operations of the API.
    """
    for route in falcon.inspect.inspect_app(app).routes:
        path = FALCON_FIELD.sub(r"{\1}", route.path)
        for method in route.methods:
            if not method.internal:
                yield method.method.lower(), path, route.path


def _document_operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


@pytest.mark.parametrize("service_token", [None, TOKEN])
def test_the_document_has_every_route_and_method_of_the_app_and_no_other(
    service_token: str | None,
) -> None:
    settings = _settings(service_token)
    in_app = {(method, path) for method, path, _ in _app_routes(_app(settings))}
    in_document = {(method, path) for method, path, _ in _document_operations(_document(settings))}
    assert sorted(in_app - in_document) == [], "give the route its operations in janus/routes.py"
    assert sorted(in_document - in_app) == [], "no resource in janus/routes.py answers it"


def test_path_parameters_have_the_schema_of_their_falcon_converter() -> None:
    settings = _settings()
    document = _document(settings)
    checked = 0
    for _, path, falcon_path in _app_routes(_app(settings)):
        parameters = {one["name"]: one for one in document["paths"][path].get("parameters", [])}
        for name, converter in FALCON_FIELD.findall(falcon_path):
            assert parameters[name]["in"] == "path"
            assert parameters[name]["required"] is True
            assert parameters[name]["schema"] == CONVERTER_SCHEMAS[converter or None], path
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("service_token", [None, TOKEN])
def test_the_document_is_valid_openapi_3_1(service_token: str | None) -> None:
    document = _document(_settings(service_token))
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)


def test_the_service_token_is_required_everywhere_but_health_and_the_dashboard_files() -> None:
    document = _document(_settings(TOKEN))
    assert document["components"]["securitySchemes"]["serviceToken"]["scheme"] == "bearer"
    for method, path, operation in _document_operations(document):
        schemes = {name for requirement in operation["security"] for name in requirement}
        guarded = path not in ("/health", "/health/ready", *DASHBOARD_FILES)
        assert ("serviceToken" in schemes) == guarded, (method, path)
        assert ("401" in operation["responses"]) == guarded, (method, path)


def test_without_a_service_token_only_x_user_id_is_required() -> None:
    document = _document(_settings())
    assert "serviceToken" not in document["components"]["securitySchemes"]
    for method, path, operation in _document_operations(document):
        schemes = {name for requirement in operation["security"] for name in requirement}
        user_routes = not path.startswith(("/health", "/openapi.json", "/metrics")) and (
            path not in DASHBOARD_FILES
        )
        assert schemes == ({"userId", "apiKey"} if user_routes else set()), (method, path)
        assert ("401" in operation["responses"]) == user_routes, (method, path)


def _resolved(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        *_, kind, name = item["$ref"].split("/")
        item = document["components"][kind][name]
    return item


def _examples(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, value) of every example of a body, asked or answered."""
    for method, path, operation in _document_operations(document):
        bodies = [("request", operation.get("requestBody", {}))]
        bodies += [
            (status, _resolved(document, one)) for status, one in operation["responses"].items()
        ]
        for status, body in bodies:
            for media in body.get("content", {}).values():
                for name, example in media.get("examples", {}).items():
                    yield f"{method} {path} {status} {name}", media["schema"], example["value"]


def test_every_example_is_valid_against_its_schema() -> None:
    document = _document(_settings(TOKEN))
    examples = list(_examples(document))
    assert len(examples) > 30
    for where, schema, value in examples:
        validator = Draft202012Validator(
            {**schema, "components": document["components"]},
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors = [error.message for error in validator.iter_errors(value)]
        assert errors == [], where


def test_the_request_examples_are_the_seeds() -> None:
    paths = _document(_settings())["paths"]
    for prefix in ("/dashboard/jobs", "/system/jobs"):
        single = paths[prefix]["post"]["requestBody"]["content"]["application/json"]
        assert single["examples"]["seed"]["value"] == SEED_SINGLE
        for route in (f"{prefix}/batch", f"{prefix}/batch/atomic"):
            batch = paths[route]["post"]["requestBody"]["content"]["application/json"]
            assert batch["examples"]["seed"]["value"] == SEED_BATCH


def test_batch_limits_follow_the_settings() -> None:
    schemas = openapi_document(routes(7), service_token=False)["components"]["schemas"]
    assert schemas["Batch"]["properties"]["jobs"]["maxItems"] == 7
    assert schemas["CompleteMany"]["properties"]["jobs"]["maxItems"] == 7


# The keywords that say something of a value of one JSON type only.
TYPED_KEYWORDS = {
    "string": {"minLength", "maxLength", "pattern"},
    "object": {"minProperties", "maxProperties", "propertyNames"},
    "array": {"minItems", "maxItems"},
}


def _subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    """`schema` and every schema within it (the document's examples are values: skipped)."""
    if isinstance(schema, dict):
        yield schema
        for key, value in schema.items():
            if key not in ("example", "examples", "default", "enum"):
                yield from _subschemas(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _subschemas(item)


def test_each_limit_is_written_with_its_types_keyword() -> None:
    """A limit on the wrong type says nothing: a validator skips it, and openapi-generator
    warns and drops it (a config's dependencies were once an object with a maxLength)."""
    document = _document(_settings())
    for schema in _subschemas(document):
        if "type" not in schema:
            continue  # a keyword of a schema with no type holds for values of its type
        types = schema["type"]
        for kind, keywords in TYPED_KEYWORDS.items():
            if kind not in ([types] if isinstance(types, str) else types):
                assert not keywords & schema.keys(), schema
    config = document["components"]["schemas"]["Config"]["properties"]
    assert config["dependencies"]["maxProperties"] == MAX_DEPENDENCIES_PER_CONFIG
    assert config["tenant_overrides"]["maxProperties"] == MAX_TENANT_OVERRIDES


def test_get_openapi_json_serves_the_document() -> None:
    settings = _settings(TOKEN)
    client = falcon.testing.TestClient(_app(settings))
    assert client.simulate_get("/openapi.json").status_code == 401
    answer = client.simulate_get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json == _document(settings)
