"""A bounded property-based run of schemathesis against the server's own OpenAPI schema: whatever requests
the schema allows (and many it does not), the server never answers with a 5xx, and its status codes, content
types and bodies match the schema.

Each operation gets a fixed number of generated requests (derandomised, so the run is the same every time);
every request on a session (but DELETE) is sent twice, once with the generated id and once on a live session."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from medsam3.apps.server import ServerSettings
from medsam3.transports.wire_format import encode_volume

from server_harness import API_KEY, running_server, small_volume

AUTH = {"Authorization": f"Bearer {API_KEY}"}
EXAMPLES_PER_OPERATION = 30
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@pytest.fixture(autouse=True)
def hypothesis_files_under_tmp(tmp_path):
    """Hypothesis keeps its files (e.g. its unicode table) in ./.hypothesis: here, in this test's folder."""
    set_hypothesis_home_dir(tmp_path / ".hypothesis")
    yield
    set_hypothesis_home_dir(None)


def fuzz_operation(operation, url: str, session_id: str) -> None:
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def requests_get_no_server_error(case) -> None:
        case.call_and_validate(base_url=url, headers=AUTH, checks=CHECKS)
        if case.path_parameters and "session_id" in case.path_parameters and case.method != "DELETE":
            case.path_parameters["session_id"] = session_id
            case.call_and_validate(base_url=url, headers=AUTH, checks=CHECKS)

    requests_get_no_server_error()


def test_no_request_gets_a_server_error():
    # A generous rate so the fuzzer is not simply rate-limited; small uploads so it cannot fill the memory.
    server_settings = ServerSettings(api_key=API_KEY, requests_per_minute=1_000_000, max_upload_bytes=1024 * 1024,
                                     max_sessions=4)
    with running_server(settings=server_settings) as url:
        session_id = httpx.post(f"{url}/sessions", content=encode_volume(small_volume()),
                                headers=AUTH).json()["session_id"]
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=AUTH)  # the schema needs the key
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for operation in operations:
            fuzz_operation(operation, url, session_id)
