"""Client-library tests run against a live auxot cluster.

The Rust test `tests/tests/client_libraries.rs` starts a router and a worker with the real model
and runs pytest with AUXOT_BASE_URL, AUXOT_API_KEY, AUXOT_MODEL and AUXOT_EMBEDDING_MODEL set.
"""

import os

import pytest


@pytest.fixture(scope="session")
def base_url() -> str:
    return os.environ["AUXOT_BASE_URL"]


@pytest.fixture(scope="session")
def api_key() -> str:
    return os.environ["AUXOT_API_KEY"]


@pytest.fixture(scope="session")
def model() -> str:
    return os.environ["AUXOT_MODEL"]


@pytest.fixture(scope="session")
def embedding_model() -> str:
    return os.environ["AUXOT_EMBEDDING_MODEL"]


WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}

QUESTION = "What is the capital of France? Answer in one sentence."
