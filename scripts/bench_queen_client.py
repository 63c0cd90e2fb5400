#!/usr/bin/env python3
"""Client of scripts/bench-queen.sh: the same warm worker called directly (/v1/inference) and
through the queen (/v2/tasks), alternating, one stream at a time. Prints one JSON line with the
medians and the ratios: decode tokens/s through the queen over direct (the median of each
round's ratio, so drift between rounds cancels out), and the time to first token the queen adds
(median of the paired differences)."""
import http.client
import json
import statistics
import sys
import time
from urllib.parse import urlparse


def run(url, path, body):
    target = urlparse(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
    start = time.perf_counter()
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    times = []
    for raw in response:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if event["type"] == "token":
            times.append(time.perf_counter())
        elif event["type"] in ("end", "error"):
            if event["type"] == "error":
                raise RuntimeError(event)
            break
    connection.close()
    return {"ttft_ms": (times[0] - start) * 1000, "tps": (len(times) - 1) / (times[-1] - times[0])}


def main():
    worker, queen, model, rounds, tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    prompt = "Write a long story about a colony of honey bees and their queen."
    common = {"prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
    direct, relayed = [], []
    for index in range(rounds):
        # Alternate which goes first so drift in the machine's speed hits both alike.
        pair = [("d", lambda: run(worker, "/v1/inference", common)), ("q", lambda: run(queen, "/v2/tasks", dict(common, model=model)))]
        if index % 2:
            pair.reverse()
        for kind, call in pair:
            (direct if kind == "d" else relayed).append(call())
    ttft_added = statistics.median(q["ttft_ms"] - d["ttft_ms"] for d, q in zip(direct, relayed))
    result = {
        "rounds": rounds, "tokens": tokens,
        "direct_tps": round(statistics.median(r["tps"] for r in direct), 2),
        "queen_tps": round(statistics.median(r["tps"] for r in relayed), 2),
        "direct_ttft_ms": round(statistics.median(r["ttft_ms"] for r in direct), 2),
        "queen_ttft_ms": round(statistics.median(r["ttft_ms"] for r in relayed), 2),
        "ttft_added_ms": round(ttft_added, 2),
    }
    result["tps_ratio"] = round(statistics.median(q["tps"] / d["tps"] for d, q in zip(direct, relayed)), 3)
    print(json.dumps(result))


main()
