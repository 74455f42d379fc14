"""The official `openai` package's legacy completions, embeddings and reasoning refusals."""

import openai
import pytest

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def client(base_url, api_key):
    return openai.OpenAI(base_url=f"{base_url}/api/openai/v1", api_key=api_key, max_retries=0)


def complete(client, model, **extra):
    return client.completions.create(
        model=model, prompt=PROMPT, temperature=0, max_tokens=8, **extra
    )


def test_text_completion(client, model):
    completion = complete(client, model)
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.model == model
    choice = completion.choices[0]
    assert "Paris" in choice.text
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streamed_completion_matches_and_echo_prepends_the_prompt(client, model):
    expected = complete(client, model).choices[0].text
    chunks = list(complete(client, model, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens > 0
    echoed = complete(client, model, echo=True).choices[0].text
    assert echoed == PROMPT + expected


def test_stop_strings_cut_the_completion(client, model):
    completion = client.completions.create(
        model=model, prompt="1, 2, 3, 4,", temperature=0, max_tokens=16, stop=[","]
    )
    assert completion.choices[0].text.strip() == "5"
    assert completion.choices[0].finish_reason == "stop"


def test_embeddings_of_a_chat_model_are_refused(client, model):
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=model, input="hello")
    assert error.value.status_code == 400
    assert f"model `{model}` is not an embedding model" in error.value.message


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_embeddings(client, embedding_model):
    # Without encoding_format the package asks for base64 and decodes it itself.
    texts = ["The cat sat on the mat.", "Stock prices fell sharply"]
    result = client.embeddings.create(model=embedding_model, input=texts)
    assert result.model == embedding_model
    assert [d.index for d in result.data] == [0, 1]
    vectors = [d.embedding for d in result.data]
    assert len(vectors[0]) == len(vectors[1]) > 0
    assert all(abs(dot(v, v) - 1) < 1e-3 for v in vectors)  # the model normalizes
    assert dot(vectors[0], vectors[1]) < 0.999
    assert result.usage.prompt_tokens >= sum(len(t) for t in texts)  # one token per byte
    floats = client.embeddings.create(model=embedding_model, input=texts[0], encoding_format="float")
    assert dot(floats.data[0].embedding, vectors[0]) > 0.9999
    # `auto` finds the embedding model; chat's `auto` never does.
    assert client.embeddings.create(model="auto", input="hello").model == embedding_model


def test_reasoning_effort_on_a_model_that_does_not_reason_is_refused(client, model):
    models = {m.id: m for m in client.models.list()}
    assert models[model].model_extra["capabilities"]["reasoning"] is False
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Hi"}],
            reasoning_effort="high",
            max_tokens=5,
        )
    assert f"model `{model}` does not support reasoning" in error.value.message
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=model, input="Hi", reasoning={"effort": "high"})
