#!/usr/bin/env python3
"""Load client for scripts/bench.sh. Runs N concurrent streaming generations of a fixed length
against an rbee worker (/v1/inference) or llama-server (/completion) and prints one JSON line:
aggregate tokens/s over the wall time, per-stream decode rate seen by the client, TTFT.
The same client measures both servers, so its own overhead cancels out of the ratios. Neither
server reuses a prompt here (cache_prompt false): every stream prefills its prompt in full.
A fifth argument, `json` or `free`, asks the worker for a JSON object (response_format) or the
same request unconstrained, both sampled (seed 1) and ending where the model ends."""
import http.client
import json
import statistics
import sys
import threading
import time
from urllib.parse import urlparse


def stream_once(url, kind, prompt, max_tokens, results, index, output=None):
    target = urlparse(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
    if output is not None:
        path = "/v1/inference"
        body = {"prompt": prompt, "max_tokens": max_tokens, "seed": 1, "cache_prompt": False}
        if output == "json":
            body["response_format"] = {"type": "json_object"}
    elif kind == "rbee":
        path = "/v1/inference"
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "cache_prompt": False}
    else:
        path = "/completion"
        body = {"prompt": prompt, "n_predict": max_tokens, "temperature": 0, "ignore_eos": True,
                "stream": True, "cache_prompt": False}
    start = time.perf_counter()
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    token_times, tokens = [], 0
    for raw in response:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if kind == "rbee":
            if event["type"] == "token":
                token_times.append(time.perf_counter())
            elif event["type"] == "end":
                tokens = event["tokens_out"]
                break
            elif event["type"] == "error":
                raise RuntimeError(event)
        else:
            if event.get("content") is not None and not event.get("stop"):
                token_times.append(time.perf_counter())
            if event.get("stop"):
                tokens = event.get("timings", {}).get("predicted_n", len(token_times))
                break
    connection.close()
    end = time.perf_counter()
    results[index] = {"start": start, "end": end, "tokens": tokens, "token_times": token_times}


def main():
    url, kind, concurrency, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    output = sys.argv[5] if len(sys.argv) > 5 else None
    prompt = "Write a long story about a colony of honey bees and their queen."
    if output is not None:
        prompt = "A JSON object describing a colony of honey bees, their queen, their hive and their year, with many fields:\n"
    results = [None] * concurrency
    threads = [threading.Thread(target=stream_once, args=(url, kind, prompt, max_tokens, results, i, output)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    total = sum(r["tokens"] for r in results)
    decode_rates = []
    for r in results:
        times = r["token_times"]
        if len(times) > 2:
            decode_rates.append((len(times) - 1) / (times[-1] - times[0]))
    print(json.dumps({
        "kind": kind, "concurrency": concurrency, "tokens": total, "wall_s": wall,
        "aggregate_tps": total / wall,
        "stream_decode_tps": statistics.median(decode_rates) if decode_rates else 0,
        "ttft_ms": statistics.median((r["token_times"][0] - r["start"]) * 1000 for r in results if r["token_times"]),
    }))


if __name__ == "__main__":
    main()
