"""A Python app that listens on 127.0.0.1 only, as many frameworks do by
default: it runs, and the gateway cannot reach it."""
import http.server
import os

port = int(os.environ["PORT"])
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
print(f"serving on http://127.0.0.1:{port}", flush=True)
server.serve_forever()
