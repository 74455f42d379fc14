"""The official `openai` package against auxot's OpenAI dialect."""

import json

import openai
import pytest
from conftest import QUESTION, WEATHER_TOOL_SCHEMA

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": WEATHER_TOOL_SCHEMA,
    },
}


@pytest.fixture(scope="module")
def client(base_url, api_key):
    return openai.OpenAI(base_url=f"{base_url}/api/openai/v1", api_key=api_key, max_retries=0)


def ask(client, model, **extra):
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=40,
        **extra,
    )


def test_chat_completion(client, model):
    completion = ask(client, model)
    assert "Paris" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == model
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streaming_with_the_sdk_helper_matches_non_streaming(client, model):
    expected = ask(client, model).choices[0].message.content
    with client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=40,
        stream_options={"include_usage": True},
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == expected
    assert final.choices[0].message.content == expected
    assert final.usage is not None and final.usage.completion_tokens > 0


def test_raw_stream_iterates_chunks(client, model):
    chunks = list(ask(client, model, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_forced_tool_call_has_valid_arguments(client, model):
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What's the weather like in Paris today?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str) and arguments["city"]
    assert arguments["unit"] in ("celsius", "fahrenheit")
    assert set(arguments) == {"city", "unit"}


def test_required_tool_call_streams_fragments(client, model):
    with client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": "What's the weather like in Paris today?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_tokens=60,
        temperature=0,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"]


def test_json_object_response_format(client, model):
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Give the capital of France as JSON with a key named capital."}],
        response_format={"type": "json_object"},
        max_tokens=40,
        temperature=0,
    )
    assert isinstance(json.loads(completion.choices[0].message.content), dict)


def test_json_schema_response_format(client, model):
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string"}, "country": {"type": "string"}},
        "required": ["capital", "country"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}},
        max_tokens=60,
        temperature=0,
    )
    answer = json.loads(completion.choices[0].message.content)
    assert set(answer) == {"capital", "country"}
    assert all(isinstance(v, str) for v in answer.values())


def test_models(client, model):
    ids = [m.id for m in client.models.list()]
    assert model in ids
    assert client.models.retrieve(model).id == model


def test_errors_raise_the_sdk_exceptions(base_url, client, model):
    bad = openai.OpenAI(base_url=f"{base_url}/api/openai/v1", api_key="rtr_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        ask(bad, model)
    with pytest.raises(openai.NotFoundError):
        ask(client, "no-such-model")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model, messages=[], max_tokens=5)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_images_need_a_vision_model(client, model):
    png = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": png}},
            ]}],
            max_tokens=5,
        )
    assert "does not accept images" in str(caught.value)
