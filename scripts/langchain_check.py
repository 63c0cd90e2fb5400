"""LangChain's langchain-openai, unchanged, against a running queen (issue 26, acceptance 3): a
forced tool through bind_tools, the tool round trip, and with_structured_output of a Pydantic
model.

Usage: langchain_check.py BASE_URL MODEL_ID
"""
import sys

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

base_url, model_id = sys.argv[1:3]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny, 22 C in {city}"


llm = ChatOpenAI(base_url=base_url, api_key="unused-without-a-token", model=model_id, temperature=0, max_tokens=80, max_retries=0,
                 stop=["<|im_end|>"])
forced = llm.bind_tools([get_weather], tool_choice="get_weather")
question = HumanMessage("What is the weather in Paris?")
reply = forced.invoke([question])
assert len(reply.tool_calls) == 1 and reply.tool_calls[0]["name"] == "get_weather", reply
assert isinstance(reply.tool_calls[0]["args"].get("city"), str), reply.tool_calls
print(f"bind_tools: {reply.tool_calls[0]}")

result = get_weather.invoke(reply.tool_calls[0])
assert isinstance(result, ToolMessage), result
answer = llm.bind_tools([get_weather]).invoke([question, reply, result])
assert not answer.tool_calls, answer
print(f"round trip: {answer.content!r}")


class Person(BaseModel):
    name: str = Field(description="the person's name")
    age: int = Field(description="the age in years", ge=0, le=130)


structured = llm.with_structured_output(Person, method="json_schema")
person = structured.invoke("Invent a person for a novel.")
assert isinstance(person, Person), person
print(f"with_structured_output: {person!r}")
print("langchain check passed")
