"""The official `openai` package's Responses API (`client.responses`) against auxot."""

import json

import openai
import pytest
from conftest import QUESTION, WEATHER_TOOL_SCHEMA

WEATHER_FUNCTION = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": WEATHER_TOOL_SCHEMA,
    "strict": True,
}


@pytest.fixture(scope="module")
def client(base_url, api_key):
    return openai.OpenAI(base_url=f"{base_url}/api/openai/v1", api_key=api_key, max_retries=0)


def ask(client, model, **extra):
    return client.responses.create(
        model=model, input=QUESTION, temperature=0, max_output_tokens=40, **extra
    )


def test_plain_response(client, model):
    response = ask(client, model)
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == model
    assert "Paris" in response.output_text
    assert [item.type for item in response.output] == ["message"]
    assert response.output[0].content[0].type == "output_text"
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_streamed_response_matches_the_plain_one(client, model):
    expected = ask(client, model).output_text
    with client.responses.stream(
        model=model, input=QUESTION, temperature=0, max_output_tokens=40
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "response.output_item.added" in types and "response.output_text.done" in types
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == expected
    assert final.output_text == expected
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # A stream keeps one id, and the router that streamed it continues the conversation.
    assert final.id == events[0].response.id
    follow_up = client.responses.create(
        model=model,
        previous_response_id=final.id,
        input="Repeat that.",
        temperature=0,
        max_output_tokens=5,
    )
    assert follow_up.previous_response_id == final.id
    assert follow_up.usage.input_tokens > final.usage.input_tokens + final.usage.output_tokens


def test_a_short_limit_is_incomplete(client, model):
    response = client.responses.create(model=model, input=QUESTION, max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"


def test_previous_response_id_carries_the_conversation(client, model):
    first = client.responses.create(
        model=model, input="My name is Ada.", temperature=0, max_output_tokens=10
    )
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input="What is my name?",
        temperature=0,
        max_output_tokens=10,
    )
    # Ten tokens may cut the small model's answer short: either way it answered.
    assert second.status in ("completed", "incomplete")
    assert second.output_text
    assert second.previous_response_id == first.id
    # The second prompt holds the first exchange: more than its own words.
    alone = client.responses.create(
        model=model, input="What is my name?", temperature=0, max_output_tokens=1
    )
    assert second.usage.input_tokens >= alone.usage.input_tokens + first.usage.output_tokens
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model=model, previous_response_id="resp_made_up", input="Hi")
    assert error.value.status_code == 400
    assert "previous_response_id" in error.value.message


def test_function_tool_call_and_its_output(client, model):
    response = client.responses.create(
        model=model,
        input="What's the weather like in Paris today?",
        tools=[WEATHER_FUNCTION],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
        max_output_tokens=60,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    arguments = json.loads(call.arguments)
    assert set(arguments) == {"city", "unit"}
    assert arguments["unit"] in ("celsius", "fahrenheit")
    follow_up = client.responses.create(
        model=model,
        previous_response_id=response.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees and sunny"}],
        tools=[WEATHER_FUNCTION],
        temperature=0,
        max_output_tokens=30,
    )
    assert follow_up.status in ("completed", "incomplete")
    assert follow_up.output[0].type in ("message", "function_call")


def test_unsupported_tools_are_refused(client, model):
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model=model, input="Hi", tools=[{"type": "web_search"}])
    assert "only function tools" in error.value.message
