"""Properties of the HTTP service over real HTTP: whatever a client sends, the answer is a 200 or a documented
4xx that names the field at fault, never a 5xx.

schemathesis drives every operation from the live server's /openapi.json (valid and invalid requests) and
holds each answer to the document, sending the tokens the document names and checking that a request without
them, or with wrong ones, is refused; hypothesis sends event batches and paths no schema would generate (lone
surrogates, bytes that are not UTF-8, huge integers, nested junk).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from recmodels.serving.app import create_app
from tests.serving.conftest import NUM_ITEMS, item_raw
from tests.serving.test_http import WRITE_TOKEN, bearer, published, running

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,  # an invalid request is refused
    ignored_auth,  # a request without its token, or with a wrong one, is refused
]
READ_TOKEN = "read-token-of-the-tests"

# A server lives for one test and answers every example of it: examples share (and add to) its store.
SHARED_SERVER = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture
def base_url(served_folder) -> Iterator[str]:
    """A server for HSTU, the model that reads event times (timestamps reach the model's arithmetic), whose
    reads need a token too."""
    with running(create_app(published(served_folder("hstu")), write_token=WRITE_TOKEN, read_token=READ_TOKEN)) as url:
        yield url


def with_catalogue_items(case: schemathesis.Case) -> schemathesis.Case:
    """The case with its events' items taken from the catalogue: a valid batch that is applied (200), where
    schema-valid random items would all be refused as unknown (422)."""
    events = [{**e, "item": item_raw(1 + i % NUM_ITEMS)} for i, e in enumerate(case.body["events"])]
    case.body = {**case.body, "events": events}
    return case


# Each operation's cases are a hypothesis strategy run here, not schemathesis' pytest integration: the schema
# exists only once the fixture's server runs, and schemathesis.pytest.from_fixture (4.32) fails on pytest 9
# ("'Function' object has no attribute '_nodeid'").
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_its_document_says(base_url, mode):
    tokens = {"write_token": {"bearer": WRITE_TOKEN}, "read_token": {"bearer": READ_TOKEN}}
    config = schemathesis.config.SchemathesisConfig.from_dict({"auth": {"openapi": tokens}})
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    for operation in (result.ok() for result in schema.get_all_operations()):
        cases = operation.as_strategy(mode)
        if mode is GenerationMode.POSITIVE and operation.body:
            cases |= cases.map(with_catalogue_items)
        if mode is GenerationMode.NEGATIVE and not (list(operation.iter_parameters()) or operation.body):
            continue  # nothing to get wrong in GET /health

        @given(case=cases)
        @settings(SHARED_SERVER, max_examples=30)
        def answers_as_documented(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=60)

        answers_as_documented()


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
odd_text = st.text(st.characters(exclude_categories=()), max_size=300)  # lone surrogates and NUL included
valid_events = st.fixed_dictionaries(
    {
        "user": st.sampled_from(["user-0", "user-1", "ana"]) | st.text(min_size=1, max_size=20) | st.integers(0, 99),
        "item": st.sampled_from([item_raw(i) for i in range(1, NUM_ITEMS + 1)]),
        "timestamp": st.integers(0, 1_700_000_000_000),  # up to 2023: later ones may be after tomorrow
    }
)
odd_events = st.fixed_dictionaries(
    {
        "user": odd_text | st.integers(-(2**70), 2**70) | junk,
        "item": odd_text | st.integers(-(2**70), 2**70) | junk,
        "timestamp": st.integers(-(2**80), 2**80) | junk,
    },
    optional={"extra": junk},
)
batches = st.one_of(
    st.fixed_dictionaries({"events": st.lists(valid_events, min_size=1, max_size=20)}),
    st.fixed_dictionaries({"events": st.lists(valid_events | odd_events, max_size=20)}, optional={"evts": junk}),
    st.fixed_dictionaries({"events": junk}),
    junk,
)


def fields_of(body: object) -> set[str]:
    """The fields an answer about ``body`` may name: the body, its keys, events[i] and their keys."""
    names = {"body", "events"}
    if isinstance(body, dict):
        names |= set(body)
        if isinstance(body.get("events"), list):
            for index, one in enumerate(body["events"]):
                names.add(f"events[{index}]")
                if isinstance(one, dict):
                    names |= {f"events[{index}].{key}" for key in (*one, "user", "item", "timestamp")}
    return names


def assert_refusal_names_a_field(response: httpx.Response, fields: set[str]) -> None:
    assert 400 <= response.status_code < 500, response.text
    detail = response.json()["detail"]
    assert any(detail.startswith(f"{field}: ") for field in fields), detail


@given(body=batches, as_bytes=st.sampled_from(["json", "ascii json", "broken utf-8"]))
@settings(SHARED_SERVER, max_examples=150)
def test_event_batches_get_a_report_or_a_4xx_naming_the_field(base_url, body, as_bytes):
    raw = json.dumps(body, ensure_ascii=as_bytes != "json").encode("utf-8", "surrogatepass")
    if as_bytes == "broken utf-8":
        raw = raw.replace(b"u", b"\xff", 1)
    headers = {"content-type": "application/json", **bearer(WRITE_TOKEN)}
    response = httpx.post(f"{base_url}/events", content=raw, headers=headers, timeout=60)
    event(str(response.status_code))
    if response.status_code == 200:
        report = response.json()
        assert report["applied"] + report["duplicates"] + report["stale"] == len(body["events"])
    else:
        assert_refusal_names_a_field(response, fields_of(body))


@given(
    user=st.text(max_size=40).map(str.encode) | st.binary(max_size=300),
    k=st.none() | st.integers(-5, 2000) | st.text(max_size=8),
    exclude_seen=st.none() | st.sampled_from(["true", "false", "1", "0"]) | st.text(max_size=8),
)
@settings(SHARED_SERVER, max_examples=100)
def test_any_path_user_and_query_get_recommendations_or_a_4xx_naming_the_parameter(base_url, user, k, exclude_seen):
    escaped = urllib.parse.quote_from_bytes(user, safe="").replace(".", "%2E")  # or a client drops "/../"
    path = f"/users/{escaped}/recommendations"
    query = {name: str(value) for name, value in [("k", k), ("exclude_seen", exclude_seen)] if value is not None}
    response = httpx.get(f"{base_url}{path}", params=query, headers=bearer(READ_TOKEN), timeout=60)
    event(str(response.status_code))
    if response.status_code != 200:
        assert_refusal_names_a_field(response, {"user", "k", "exclude_seen"})
