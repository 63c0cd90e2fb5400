#!/usr/bin/env python3
"""Prompt-reuse client for scripts/bench.sh: the time to the first token when prompts share a
prefix, against an rbee worker (/v1/inference) or llama-server (/completion, its default
cache_prompt). Prints one JSON line.

  turns  RUN   an 8-turn conversation, each turn resending the history plus ~100 new tokens:
               the first token's wait at every turn (turn 8 is the figure)
  shared RUN   8 questions after one ~800-token system text, 2 at a time: the median wait

RUN makes the texts of one run its own, so no run starts from another run's cells."""
import http.client
import json
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

SUBJECTS = ["The river", "A lighthouse keeper", "The old library", "Our garden", "The night train",
            "A mountain village", "The harbour", "A small bakery", "The observatory", "An orchard"]
VERBS = ["remembers", "collects", "watches over", "describes", "hides", "celebrates", "measures", "welcomes"]
OBJECTS = ["the first snow of winter", "letters from distant cousins", "boats returning at dusk",
           "the smell of fresh bread", "maps of forgotten roads", "songs about the sea",
           "the slow turning of the stars", "apples in late September"]


def paragraph(index):
    sentences = []
    for sentence in range(5):
        n = index * 7 + sentence * 3
        sentences.append(f"{SUBJECTS[n % len(SUBJECTS)]} {VERBS[(n // 2) % len(VERBS)]} "
                         f"{OBJECTS[(n + index) % len(OBJECTS)]}, and number {n} is written beside it.")
    return " ".join(sentences)


def generate(url, kind, prompt, max_tokens):
    """Streams one generation; returns (text, seconds to the first token)."""
    target = urlparse(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
    if kind == "rbee":
        path, body = "/v1/inference", {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    else:
        path, body = "/completion", {"prompt": prompt, "n_predict": max_tokens, "temperature": 0, "stream": True}
    start = time.perf_counter()
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    text, first = "", None
    for raw in response:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if kind == "rbee":
            if event["type"] == "token":
                first = first or time.perf_counter()
                text += event["t"]
            elif event["type"] == "error":
                raise RuntimeError(event)
            elif event["type"] == "end":
                break
        else:
            if event.get("content"):
                first = first or time.perf_counter()
                text += event["content"]
            if event.get("stop"):
                break
    connection.close()
    return text, (first or time.perf_counter()) - start


def turns(url, kind, run):
    history = f"Conversation {run}.\n"
    waits = []
    for turn in range(8):
        history += f"User: {paragraph(run * 8 + turn)} What do you make of this?\nAssistant:"
        answer, wait = generate(url, kind, history, 16)
        waits.append(wait * 1000)
        history += answer + "\n"
    return {"kind": kind, "run": "turns", "ttft_ms": waits, "turn8_ttft_ms": waits[7], "turn1_ttft_ms": waits[0]}


def shared(url, kind, run):
    system = f"Notes, set {run}.\n" + "\n".join(paragraph(run * 10 + i) for i in range(10)) + "\n"
    waits = [None] * 8

    def ask(index):
        waits[index] = generate(url, kind, system + f"Question {index}: what is said about number {index * 17}?\nAnswer:", 16)[1] * 1000

    for pair in range(4):
        threads = [threading.Thread(target=ask, args=(pair * 2 + i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return {"kind": kind, "run": "shared", "ttft_ms": waits, "median_ttft_ms": statistics.median(waits)}


def main():
    url, kind, mode, run = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print(json.dumps(turns(url, kind, run) if mode == "turns" else shared(url, kind, run)))


if __name__ == "__main__":
    main()
