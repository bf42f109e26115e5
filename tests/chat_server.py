"""A chat-completions server on 127.0.0.1 for tests, answering deterministically.

The reply to a valid request echoes what it was sent: the short caption names the object lines of the
prompt (the lines that start with "- "), and the long caption repeats them with the image checksum.
So the same request always gets the same reply, and a test can tell which record a caption belongs to.

`behaviours` is a list of names consumed one per request, in arrival order; when it is empty,
`default` applies. Names: ok, slow (wait `slow_seconds`, then ok), 429, 500, malformed (a body that is
not JSON), refusal, missing (no long caption), fence (the JSON inside a Markdown code fence), 401.
`fail_images` maps an image checksum to a behaviour applied to every request for that image.

The server counts requests and the requests in flight. With `gate` set, each request waits (at most
`gate_seconds`) until `gate` requests are in flight at once, so a test of a concurrency limit checks
`max_in_flight` without timing anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ChatServer:
    """Runs the server in a background thread; use as a context manager."""

    def __init__(self, default: str = "ok"):
        self.default = default
        self.behaviours: list[str] = []
        self.fail_images: dict[str, str] = {}
        self.slow_seconds = 0.0
        self.gate: int | None = None
        self.gate_seconds = 2.0
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.condition = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self.condition:
            self.gate = None
            self.condition.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset_counts(self) -> None:
        with self.condition:
            self.requests = 0
            self.max_in_flight = 0
            self.bodies.clear()
            self.headers.clear()

    def next_behaviour(self, image_sha256: str) -> str:
        with self.condition:
            if image_sha256 in self.fail_images:
                return self.fail_images[image_sha256]
            return self.behaviours.pop(0) if self.behaviours else self.default

    def enter(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self.condition:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.bodies.append(body)
            self.headers.append(headers)
            self.condition.notify_all()
            if self.gate is not None:
                deadline = time.monotonic() + self.gate_seconds
                while self.gate is not None and self.in_flight < self.gate and time.monotonic() < deadline:
                    self.condition.wait(timeout=max(deadline - time.monotonic(), 0.0))

    def leave(self) -> None:
        with self.condition:
            self.in_flight -= 1


def image_checksum(body: dict[str, Any]) -> str:
    """Return the SHA-256 of the image a request carries as a base64 data URL ("" when none)."""
    for message in body.get("messages", []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                return hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()
    return ""


def prompt_text(body: dict[str, Any]) -> str:
    for message in body.get("messages", []):
        if message.get("role") == "user":
            return "".join(part.get("text", "") for part in message["content"] if part.get("type") == "text")
    return ""


def echo_captions(body: dict[str, Any]) -> dict[str, str]:
    """Return the deterministic captions for a request: its object lines and image checksum."""
    objects = [line[2:].strip() for line in prompt_text(body).splitlines() if re.match(r"- \d+ ", line)]
    objects = objects or ["no labelled objects"]
    listed = "; ".join(objects)
    checksum = image_checksum(body)[:12]
    return {
        "short_caption": f"An overhead image with {objects[0]}.",
        "long_caption": f"This overhead image shows {listed}. The scene was captioned by the echo server for image {checksum}.",
    }


def _completion(content: str, prompt_tokens: int = 100, completion_tokens: int = 40) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it so)
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            if not re.fullmatch(r"/v1/chat/completions/?", self.path):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            server.enter(body, dict(self.headers))
            try:
                self._answer(body, server.next_behaviour(image_checksum(body)))
            finally:
                server.leave()

        def _answer(self, body: dict[str, Any], behaviour: str) -> None:
            if behaviour == "slow":
                time.sleep(server.slow_seconds)
                behaviour = "ok"
            if behaviour == "429":
                self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
            elif behaviour == "500":
                self._send(500, {"error": {"message": "internal error"}})
            elif behaviour == "401":
                self._send(401, {"error": {"message": "invalid api key"}})
            elif behaviour == "malformed":
                self._send_raw(200, b'{"choices": [{"message": ')
            elif behaviour == "refusal":
                self._send(200, _completion("I'm sorry, but I can't help with describing this image."))
            elif behaviour == "missing":
                self._send(200, _completion(json.dumps({"short_caption": "An overhead image."})))
            elif behaviour == "fence":
                self._send(200, _completion("Here you go:\n```json\n" + json.dumps(echo_captions(body)) + "\n```"))
            else:
                self._send(200, _completion(json.dumps(echo_captions(body))))

        def _send(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            self._send_raw(status, json.dumps(data).encode("utf-8"), headers)

        def _send_raw(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    return Handler
