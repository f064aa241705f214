"""Drives Lamina with the stock `ollama` and `openai` Python clients, and
with LangChain's Ollama and OpenAI integrations on top of them.

Run by tests/tests/inference_api.rs:
`python stock_clients.py ollama|openai|langchain|anonymous|pull|limit` with LAMINA_URL,
LAMINA_KEY, MODEL and EMBEDDER in the environment (LAMINA_KEY empty: no
credentials at all; `pull` also reads PULL_MODEL). Prints "ok" when every check passed; any failure
raises.
"""

import json
import os
import sys

import ollama
import openai

URL = os.environ["LAMINA_URL"]
KEY = os.environ["LAMINA_KEY"]
MODEL = os.environ["MODEL"]
EMBEDDER = os.environ["EMBEDDER"]
WRONG_KEY = "lam_" + "0" * 64
GREEDY = {"temperature": 0, "num_predict": 8}
HELLO = [{"role": "user", "content": "Say hello."}]
COLOR = {
    "type": "object",
    "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["color"],
}


def bearer(key=KEY):
    return {"Authorization": f"Bearer {key}"} if key else {}


def ollama_client(key=KEY):
    return ollama.Client(host=URL, headers=bearer(key))


def openai_client(key=KEY):
    # No retries: a refusal must surface as the client's own exception.
    return openai.OpenAI(base_url=URL + "/v1", api_key=key or "none", max_retries=0)


def expect(error, call):
    try:
        call()
    except error as e:
        return e
    raise AssertionError(f"expected {error.__name__}")


def check_ollama():
    c = ollama_client()
    r = c.generate(model=MODEL, prompt="Name a color.", options=GREEDY)
    assert r.done and r.eval_count == 8 and r.done_reason == "length", r
    assert r.total_duration >= r.eval_duration > 0, r
    pieces = list(c.chat(model=MODEL, messages=HELLO, options=GREEDY, stream=True))
    assert pieces[-1].done and pieces[-1].eval_count == 8, pieces[-1]
    whole = c.chat(model=MODEL, messages=HELLO, options=GREEDY)
    assert "".join(p.message.content for p in pieces) == whole.message.content
    e = c.embed(model=EMBEDDER, input=["a cat", "a dog"])
    assert len(e.embeddings) == 2 and len(e.embeddings[0]) == 384
    assert any(m.model == MODEL for m in c.list().models)
    shown = c.show(MODEL)
    assert shown.details.family == "gemma3", shown
    assert any(m.model == MODEL for m in c.ps().models)
    answer = c.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "Pick a color."}],
        format=COLOR,
        options={"temperature": 0, "num_predict": 40},
    )
    assert json.loads(answer.message.content)["color"] in ("red", "green", "blue")
    e = expect(ollama.ResponseError, lambda: c.generate(model="nope:1", prompt="x"))
    assert e.status_code == 404, e
    e = expect(ollama.ResponseError, lambda: ollama_client(WRONG_KEY).list())
    assert e.status_code == 401, e


def check_openai():
    c = openai_client()
    r = c.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0)
    assert r.choices[0].finish_reason == "length", r
    assert r.usage.completion_tokens == 8, r
    chunks = list(
        c.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content, (text, r)
    assert chunks[-1].usage.completion_tokens == 8
    done = c.completions.create(model=MODEL, prompt="The sky is", max_tokens=4, temperature=0)
    assert isinstance(done.choices[0].text, str)
    emb = c.embeddings.create(model=EMBEDDER, input=["one", "two"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384
    assert any(m.id == MODEL for m in c.models.list())
    assert c.models.retrieve(MODEL).id == MODEL
    js = c.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}] + HELLO,
        max_tokens=40,
        temperature=0,
        response_format={"type": "json_object"},
    )
    # A JSON object, or (cut short: the base model's JSON may run long)
    # the start of one.
    content = js.choices[0].message.content
    assert content.startswith("{"), content
    if js.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict), content
    expect(
        openai.NotFoundError,
        lambda: c.chat.completions.create(model="nope:1", messages=HELLO),
    )
    expect(openai.AuthenticationError, lambda: openai_client(WRONG_KEY).models.list())


def check_langchain():
    """What LangChain users write: chat models, streaming, embeddings and
    structured output through `langchain-ollama` and `langchain-openai`."""
    from typing import Literal

    from langchain_ollama import ChatOllama, OllamaEmbeddings
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings
    from pydantic import BaseModel

    class Color(BaseModel):
        color: Literal["red", "green", "blue"]

    headers = {"client_kwargs": {"headers": bearer()}}
    chat = ChatOllama(
        model=MODEL, base_url=URL, temperature=0, num_predict=8,
        validate_model_on_init=True, **headers,
    )
    reply = chat.invoke("Say hello.")
    assert reply.content and reply.usage_metadata["output_tokens"] == 8, reply
    assert "".join(c.content for c in chat.stream("Say hello.")) == reply.content
    # `think: true` (reasoning) is accepted and ignored: same greedy answer.
    thinking = ChatOllama(
        model=MODEL, base_url=URL, temperature=0, num_predict=8, reasoning=True, **headers
    )
    assert thinking.invoke("Say hello.").content == reply.content
    picked = ChatOllama(
        model=MODEL, base_url=URL, temperature=0, num_predict=40, **headers
    ).with_structured_output(Color, method="json_schema").invoke("Pick a color.")
    assert picked.color in ("red", "green", "blue"), picked
    vectors = OllamaEmbeddings(model=EMBEDDER, base_url=URL, **headers).embed_documents(
        ["a cat", "a dog"]
    )
    assert len(vectors) == 2 and len(vectors[0]) == 384

    gpt = ChatOpenAI(
        model=MODEL, base_url=URL + "/v1", api_key=KEY or "none",
        temperature=0, max_tokens=8, max_retries=0,
    )
    answer = gpt.invoke("Say hello.")
    assert answer.response_metadata["finish_reason"] == "length", answer
    assert "".join(c.content for c in gpt.stream("Say hello.")) == answer.content
    picked = ChatOpenAI(
        model=MODEL, base_url=URL + "/v1", api_key=KEY or "none",
        temperature=0, max_tokens=40, max_retries=0,
    ).with_structured_output(Color, method="json_schema").invoke("Pick a color.")
    assert picked.color in ("red", "green", "blue"), picked
    # Without the tiktoken pre-split (it would fetch OpenAI's vocabulary):
    # the server counts tokens itself.
    embedder = OpenAIEmbeddings(
        model=EMBEDDER, base_url=URL + "/v1", api_key=KEY or "none",
        check_embedding_ctx_length=False, max_retries=0,
    )
    assert len(embedder.embed_query("a cat")) == 384


def check_anonymous():
    """No credentials at all, against routes opened with `auth = "none"`."""
    r = ollama_client().generate(model=MODEL, prompt="Name a color.", options=GREEDY)
    assert r.eval_count == 8, r
    r = openai_client().chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=8, temperature=0
    )
    assert r.usage.completion_tokens == 8, r


def check_pull():
    """`ollama pull NAME` of a name the operator registered a source for
    (as an administrator); an unregistered name is the client's 404."""
    c = ollama_client()
    name = os.environ["PULL_MODEL"]
    progress = list(c.pull(name, stream=True))
    assert progress[-1].status == "success", progress
    assert any(p.total for p in progress), progress
    assert c.show(name).details.family == "gemma3"
    e = expect(ollama.ResponseError, lambda: c.pull("unregistered:1"))
    assert e.status_code == 404, e


def check_limit():
    c = openai_client()
    expect(openai.RateLimitError, lambda: [c.models.list() for _ in range(20)])


CHECKS = {
    "ollama": check_ollama,
    "openai": check_openai,
    "langchain": check_langchain,
    "anonymous": check_anonymous,
    "pull": check_pull,
    "limit": check_limit,
}
CHECKS[sys.argv[1]]()
print("ok")
