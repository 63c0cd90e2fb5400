"""Tool calls through a running queen with the official OpenAI client (issue 26, acceptance 2):
Gemma 3 270M, given Qwen3's template through the queen, makes a forced get_weather call whose
arguments validate, whole and streamed, and a follow-up turn with the tool's result completes.

Usage: openai_tools_check.py BASE_URL MODEL_REF MODEL_ID TEMPLATE_FILE OTHER_MODEL_ID
"""
import json
import sys
import urllib.request

import jsonschema
import openai

base_url, model_ref, model_id, template_file, other_model_id = sys.argv[1:6]
client = openai.OpenAI(base_url=base_url, api_key="unused-without-a-token", timeout=300, max_retries=0)

# Bring the model into the catalog, then give it a template that knows tools.
client.chat.completions.create(model=model_ref, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
with open(template_file, encoding="utf-8") as file:
    body = json.dumps({"template": file.read()}).encode()
queen = base_url.removesuffix("/v1")
request = urllib.request.Request(f"{queen}/v1/models/{model_id}/template", data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=60) as response:
    assert response.status == 200, response.status

city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}
tools = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city", "parameters": city}}]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]

reply = client.chat.completions.create(model=model_id, messages=messages, tools=tools, tool_choice="required", max_tokens=80, temperature=0)
choice = reply.choices[0]
assert choice.finish_reason == "tool_calls", choice
assert choice.message.content is None, choice.message
calls = choice.message.tool_calls
assert len(calls) == 1 and calls[0].function.name == "get_weather" and calls[0].id, calls
jsonschema.validate(json.loads(calls[0].function.arguments), city)
print(f"tool call: {calls[0].function.name}({calls[0].function.arguments}) id={calls[0].id}")

chunks = list(client.chat.completions.create(
    model=model_id, messages=messages, tools=tools, tool_choice={"type": "function", "function": {"name": "get_weather"}},
    max_tokens=80, temperature=0, stream=True))
pieces = [call for chunk in chunks if chunk.choices for call in (chunk.choices[0].delta.tool_calls or [])]
finish = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
assert finish == ["tool_calls"], finish
assert pieces and pieces[0].id and pieces[0].function.name == "get_weather" and all(p.index == 0 for p in pieces), pieces
arguments = "".join(p.function.arguments or "" for p in pieces)
jsonschema.validate(json.loads(arguments), city)
print(f"streamed tool call: {len(pieces)} pieces, arguments {arguments}")

follow_up = messages + [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": calls[0].id, "type": "function", "function": {"name": "get_weather", "arguments": calls[0].function.arguments}}]},
    {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 22 C"},
]
answer = client.chat.completions.create(model=model_id, messages=follow_up, tools=tools, max_tokens=40, temperature=0, stop=["<|im_end|>"])
assert answer.choices[0].finish_reason in ("stop", "length") and not answer.choices[0].message.tool_calls, answer
print(f"follow-up: finish_reason={answer.choices[0].finish_reason}, {answer.choices[0].message.content!r}")

# A model whose template describes no tools (SmolLM2's): the generic format stands in, and a
# forced call still validates.
reply = client.chat.completions.create(model=other_model_id, messages=messages, tools=tools, tool_choice="required", max_tokens=80, temperature=0)
calls = reply.choices[0].message.tool_calls
assert reply.choices[0].finish_reason == "tool_calls" and len(calls) == 1 and calls[0].function.name == "get_weather", reply
jsonschema.validate(json.loads(calls[0].function.arguments), city)
print(f"generic format: {calls[0].function.name}({calls[0].function.arguments})")
print("openai tools check passed")
