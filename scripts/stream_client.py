#!/usr/bin/env python3
"""Minimal rbee worker client for scripts/demo.sh: follows the loading progress, then streams one
inference (tokens to stdout as they arrive, progress and figures to stderr). Standard library only."""
import json
import sys
import time
import urllib.error
import urllib.request


def sse(response):
    """Yields the data payloads of an SSE response, and None for each comment line."""
    for raw in response:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line.startswith("data: "):
            yield line[6:]
        elif line.startswith(":"):
            yield None


def wait_for_server(base, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    sys.exit("worker did not start")


def main():
    base, prompt = sys.argv[1], sys.argv[2]
    wait_for_server(base)
    with urllib.request.urlopen(base + "/v1/loading/progress") as response:
        for data in sse(response):
            if data is None or data == "[DONE]":
                continue
            event = json.loads(data)
            if event["stage"] == "loading_to_vram":
                total = max(event["layers_total"], 1)
                done = event["layers_loaded"]
                bar = "#" * (30 * done // total)
                sys.stderr.write(f"\rloading model [{bar:<30}] {done}/{total} layers")
            elif event["stage"] == "ready":
                sys.stderr.write("\rloading model [" + "#" * 30 + "] ready" + " " * 12 + "\n")
            else:
                sys.exit(f"\nmodel failed to load: {event.get('message')}")
    body = json.dumps({"prompt": prompt, "max_tokens": 128, "temperature": 0.7}).encode()
    request = urllib.request.Request(base + "/v1/inference", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        for data in sse(response):
            if data is None or data == "[DONE]":
                continue
            event = json.loads(data)
            if event["type"] == "token":
                sys.stdout.write(event["t"])
                sys.stdout.flush()
            elif event["type"] == "end":
                sys.stderr.write(
                    f"\n\n{event['tokens_out']} tokens, {event['tokens_per_sec']:.1f} tokens/s, "
                    f"first token after {event['ttft_ms']:.0f} ms, stop: {event['stop_reason']}\n")
            elif event["type"] == "error":
                sys.exit(f"\nerror {event['code']}: {event['message']}")


if __name__ == "__main__":
    main()
