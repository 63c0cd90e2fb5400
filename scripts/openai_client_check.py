"""The official OpenAI Python client against a running queen (acceptance 1 of the queen issue).

Usage: openai_client_check.py BASE_URL MODEL_REF MODEL_ID
"""
import sys

import openai

base_url, model_ref, model_id = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key="unused-without-a-token", timeout=300, max_retries=0)

# Streaming chat; the first request also brings the model up (the stream carries progress comments).
chunks = list(client.chat.completions.create(
    model=model_ref, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, seed=1, temperature=0, stream=True))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
usage = chunks[-1].usage
assert text.strip(), f"no text in {len(chunks)} chunks"
assert finish in (["length"], ["stop"]), finish
assert usage is not None and usage.completion_tokens >= 1 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage
print(f"stream: {len(chunks)} chunks, finish_reason={finish[0]}, usage={usage.prompt_tokens}+{usage.completion_tokens}, text={text!r}")

# Not streaming, by catalog id.
reply = client.chat.completions.create(
    model=model_id, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, seed=1, temperature=0)
assert reply.choices[0].message.content == text, (reply.choices[0].message.content, text)
assert reply.usage.completion_tokens == usage.completion_tokens
print(f"non-streaming: same text, finish_reason={reply.choices[0].finish_reason}")

# Text completions.
completion = client.completions.create(model=model_id, prompt="The sky is", max_tokens=5, temperature=0)
assert completion.choices[0].text and completion.choices[0].finish_reason in ("length", "stop")
print(f"completion: {completion.choices[0].text!r}")

# The model list.
ids = [m.id for m in client.models.list()]
assert model_id in ids, ids
print(f"models: {ids}")

# An unknown model is a 404 in OpenAI's shape.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError as error:
    assert error.code == "model_not_found", error.code
    print("unknown model: 404 model_not_found")

# Structured output: a strict JSON schema on five prompts, whole and streamed; every answer must
# parse and validate (jsonschema, from PyPI), and say how it ended.
import json

import jsonschema

person = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer", "minimum": 18, "maximum": 99}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": person, "strict": True}}
questions = ["Invent a character for a novel.", "Describe the oldest person in your village.", "Who won the chess tournament?",
             "Tell me about a famous sailor.", "Introduce a new colleague."]
for question in questions:
    messages = [{"role": "user", "content": question}]
    whole = client.chat.completions.create(model=model_id, messages=messages, max_tokens=96, temperature=0, response_format=response_format)
    answer = whole.choices[0].message.content
    assert whole.choices[0].finish_reason == "stop", (question, whole.choices[0].finish_reason, answer)
    jsonschema.validate(json.loads(answer), person)
    chunks = list(client.chat.completions.create(
        model=model_id, messages=messages, max_tokens=96, temperature=0.7, seed=5, response_format=response_format, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"], (question, finish, streamed)
    jsonschema.validate(json.loads(streamed), person)
    print(f"json_schema: {answer} / streamed {streamed}")

# json_object, and a GBNF grammar (llama-server's extension field) through extra_body.
reply = client.chat.completions.create(
    model=model_id, messages=[{"role": "user", "content": "Describe Paris in JSON."}], max_tokens=200, temperature=0,
    response_format={"type": "json_object"})
if reply.choices[0].finish_reason == "stop":
    assert isinstance(json.loads(reply.choices[0].message.content), dict), reply.choices[0].message.content
print(f"json_object: finish_reason={reply.choices[0].finish_reason}")
reply = client.chat.completions.create(
    model=model_id, messages=[{"role": "user", "content": "Is the sky blue? Answer yes or no."}], max_tokens=5, temperature=0,
    extra_body={"grammar": 'root ::= "yes" | "no"'})
assert reply.choices[0].message.content in ("yes", "no"), reply.choices[0].message.content
print(f"grammar: {reply.choices[0].message.content}")

# A schema that cannot be enforced is a 400 naming the problem.
for bad in [{"type": "object", "properties": 5}, {"type": "integer", "multipleOf": 3}]:
    try:
        client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "x"}], max_tokens=5,
            response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": bad}})
        raise AssertionError(f"schema {bad} must be refused")
    except openai.BadRequestError as error:
        assert error.code == "invalid_request", error.code
        print(f"bad schema: 400 {error.message}")
try:
    client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "x"}], max_tokens=5, extra_body={"grammar": 'root ::= "a" |\nb ::= c d'})
    raise AssertionError("a broken grammar must be refused")
except openai.BadRequestError as error:
    assert "line 2" in error.message, error.message
    print(f"bad grammar: 400 {error.message}")
# Streamed, the queen has answered 200 before a worker sees the schema: the error comes in the stream.
try:
    list(client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "x"}], max_tokens=5, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "object", "properties": 5}}}))
    raise AssertionError("a broken schema must fail the stream")
except openai.APIError as error:
    assert "properties must be an object" in error.message, error.message
    print(f"bad schema, streamed: {error.message}")
# A field rbee does not honour is OpenAI's 400 unsupported_parameter naming it; OpenAI's
# penalties and `user` are honoured.
for field, value in [("logit_bias", {"1": 5}), ("functions", [{"name": "f", "parameters": {}}])]:
    try:
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "x"}], max_tokens=2, extra_body={field: value})
        raise AssertionError(f"{field} must be refused")
    except openai.BadRequestError as error:
        assert error.code == "unsupported_parameter" and error.param == field, (error.code, error.param)
        print(f"{field}: 400 unsupported_parameter")
reply = client.chat.completions.create(
    model=model_id, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8, frequency_penalty=1.0, presence_penalty=0.5,
    user="check-user", logprobs=False)
assert reply.choices[0].message.content, reply
print("penalties and user: accepted")
# The same routes without /v1, as llama-server and vLLM serve them.
bare = openai.OpenAI(base_url=base_url.removesuffix("/v1"), api_key="unused-without-a-token", timeout=300, max_retries=0)
assert bare.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=3).choices[0].message.content
assert bare.completions.create(model=model_id, prompt="The sky is", max_tokens=3).choices[0].text
assert model_id in [m.id for m in bare.models.list()] and bare.models.retrieve(model_id).id == model_id
print("without /v1: chat, completions, models")
print("openai client check passed")
