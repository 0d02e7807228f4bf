"""The monorepo's API, in apps/api: a Python app beside a Node.js workspace."""
import http.server
import json
import os


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # Only apps/api is in the image, as /app: not the workspace around it.
        body = json.dumps({"app": "api", "cwd": os.getcwd(), "files": sorted(os.listdir("."))}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
