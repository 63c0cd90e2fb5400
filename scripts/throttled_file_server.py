#!/usr/bin/env python3
"""A file server that sends slowly, standing in for a remote model host (Hugging Face layout),
so download progress can be watched. Usage: throttled_file_server.py PORT ROOT MBPS"""
import http.server
import os
import sys
import time

port, root, mbps = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = os.path.join(root, self.path.lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = 1 << 20
        with open(path, "rb") as source:
            while data := source.read(chunk):
                self.wfile.write(data)
                time.sleep(len(data) / (mbps * 1_000_000))

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
