"""A Python standard-library app that only its Procfile starts, at $PORT."""
import argparse
import http.server
import os

parser = argparse.ArgumentParser()
parser.add_argument("--greeting", default="started without the Procfile")
greeting = parser.parse_args().greeting.encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(greeting)


http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
