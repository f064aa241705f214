"""Drives Lamina with the stock `ollama` and `openai` Python clients.

Run by tests/tests/clients.rs: `python stock_clients.py ollama|openai|limit`
with LAMINA_URL, LAMINA_KEY, MODEL and EMBEDDER in the environment. Prints
"ok" when every check passed; any failure raises.
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


def ollama_client(key=KEY):
    return ollama.Client(host=URL, headers={"Authorization": f"Bearer {key}"})


def openai_client(key=KEY):
    # No retries: a refusal must surface as the client's own exception.
    return openai.OpenAI(base_url=URL + "/v1", api_key=key, max_retries=0)


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
    assert isinstance(json.loads(js.choices[0].message.content), dict)
    expect(
        openai.NotFoundError,
        lambda: c.chat.completions.create(model="nope:1", messages=HELLO),
    )
    expect(openai.AuthenticationError, lambda: openai_client(WRONG_KEY).models.list())


def check_limit():
    c = openai_client()
    expect(openai.RateLimitError, lambda: [c.models.list() for _ in range(20)])


{"ollama": check_ollama, "openai": check_openai, "limit": check_limit}[sys.argv[1]]()
print("ok")
