"""The official `anthropic` package against auxot's Anthropic dialect."""

import anthropic
import pytest
from conftest import QUESTION, WEATHER_TOOL_SCHEMA

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": WEATHER_TOOL_SCHEMA,
}


# anthropic 2.x no longer takes `temperature` as an argument; auxot still honours it in the body.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def client(base_url, api_key):
    return anthropic.Anthropic(base_url=f"{base_url}/api/anthropic", api_key=api_key, max_retries=0)


def ask(client, model, **extra):
    return client.messages.create(
        model=model,
        max_tokens=40,
        extra_body=GREEDY,
        messages=[{"role": "user", "content": QUESTION}],
        **extra,
    )


def test_message(client, model):
    message = ask(client, model)
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert "Paris" in message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_stream_helper_parses_every_event(client, model):
    expected = ask(client, model)
    with client.messages.stream(
        model=model,
        max_tokens=40,
        extra_body=GREEDY,
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == expected.content[0].text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == expected.usage.input_tokens
    assert final.usage.output_tokens == expected.usage.output_tokens


def test_system_prompt_and_stop_sequences(client, model):
    message = client.messages.create(
        model=model,
        max_tokens=40,
        extra_body=GREEDY,
        system=[{"type": "text", "text": "You are a geography teacher."}],
        stop_sequences=["Paris"],
        messages=[{"role": "user", "content": QUESTION}],
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "Paris"
    assert "Paris" not in message.content[0].text


def test_max_tokens_stop_reason(client, model):
    message = client.messages.create(
        model=model,
        max_tokens=3,
        messages=[{"role": "user", "content": "Count from one to twenty in words."}],
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_count_tokens_equals_input_tokens(client, model):
    for tools in ([], [WEATHER_TOOL]):
        params = dict(
            model=model,
            system="You are terse.",
            messages=[{"role": "user", "content": QUESTION}],
        )
        if tools:
            params["tools"] = tools
        counted = client.messages.count_tokens(**params)
        message = client.messages.create(max_tokens=5, **params)
        assert counted.input_tokens == message.usage.input_tokens > 0


def test_forced_tool_use_has_valid_input(client, model):
    message = client.messages.create(
        model=model,
        max_tokens=60,
        extra_body=GREEDY,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "What's the weather like in Paris today?"}],
    )
    assert message.stop_reason == "tool_use"
    block = next(b for b in message.content if b.type == "tool_use")
    assert block.name == "get_weather"
    assert block.id.startswith("toolu_")
    assert isinstance(block.input["city"], str) and block.input["city"]
    assert block.input["unit"] in ("celsius", "fahrenheit")

    follow_up = client.messages.create(
        model=model,
        max_tokens=40,
        extra_body=GREEDY,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "What's the weather like in Paris today?"},
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "Sunny, 21 degrees."}]},
        ],
    )
    assert follow_up.content[0].type == "text"


def test_streamed_tool_use_any(client, model):
    with client.messages.stream(
        model=model,
        max_tokens=60,
        extra_body=GREEDY,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "What's the weather like in Paris today?"}],
    ) as stream:
        final = stream.get_final_message()
    block = next(b for b in final.content if b.type == "tool_use")
    assert block.name == "get_weather" and block.input["city"]
    assert final.stop_reason == "tool_use"


def test_models(client, model):
    page = client.models.list()
    assert model in [m.id for m in page.data]
    assert client.models.retrieve(model).id == model


def test_errors_raise_the_sdk_exceptions(base_url, client, model):
    bad = anthropic.Anthropic(base_url=f"{base_url}/api/anthropic", api_key="rtr_wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        ask(bad, model)
    with pytest.raises(anthropic.NotFoundError):
        ask(client, "no-such-model")
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=model, max_tokens=5, messages=[{"role": "system", "content": "x"}])
