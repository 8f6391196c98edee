"""Fake generator servers on 127.0.0.1 that speak the real protocols: ComfyUI and OpenAI chat.

``FakeComfyUI`` is an ASGI app served by uvicorn (as ComfyUI's aiohttp serves
both on one port): ``POST /prompt``, ``GET /history/{id}``, ``GET /view``,
``POST /queue`` and ``WS /ws?clientId=`` with ComfyUI's messages. ``FakeChat``
answers ``POST /v1/chat/completions`` with ``text/event-stream`` chunks and
``data: [DONE]``, ``usage`` last when asked with ``stream_options``.

Both record what they received, so tests compare the record with it, and both
can hold a generation at a gate (``gate``/``release``) so a test sees progress
while a step runs without timing anything.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from PIL import Image

# ------------------------------------------------------------------------- ComfyUI


class FakeComfyUI:
    """A ComfyUI on 127.0.0.1.

    ``mode``: ``ok``; ``refuse`` (400 with ``node_errors``, as for an unknown
    checkpoint); ``node_error`` (``execution_error`` on the socket); ``no_output``
    (history without images); ``no_file`` (``/view`` answers 404); ``not_png``;
    ``hang`` (queued, never started: for deadlines); ``drop`` (the socket closes
    mid-run).

    Attributes:
        prompts: every ``POST /prompt`` body received.
        progress_messages: per client id, the messages sent that a client reports
            (``status`` with a queue, ``execution_start``, ``progress``).
        deleted: prompt ids asked to be taken out of the queue.
        gate_at: when set, the run waits at this sampler step until ``release`` is set.
    """

    def __init__(self, mode: str = "ok", *, gate_at: int | None = None) -> None:
        self.mode = mode
        self.gate_at = gate_at
        self.reached = threading.Event()
        self.release = threading.Event()
        self.prompts: list[dict[str, Any]] = []
        self.progress_messages: dict[str, int] = {}
        self.deleted: list[str] = []
        self.history: dict[str, Any] = {}
        self.images: dict[str, bytes] = {}
        self._sockets: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="error", ws="websockets-sansio",
            lifespan="off", interface="asgi3",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> FakeComfyUI:
        self._thread.start()
        # uvicorn says it has started by a flag; this waits for it (not a timed assertion).
        while not self.server.started and self._thread.is_alive():
            threading.Event().wait(0.01)
        assert self.server.started, "the fake ComfyUI did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.should_exit = True
        self._thread.join(10)

    # ---------------------------------------------------------------- ASGI

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self._loop = asyncio.get_running_loop()
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        query = parse_qs(scope.get("query_string", b"").decode())
        if method == "POST" and path == "/prompt":
            await self._prompt(json.loads(body), send)
        elif method == "GET" and path.startswith("/history/"):
            prompt_id = path.rsplit("/", 1)[1]
            entry = self.history.get(prompt_id)
            await _send(send, 200, json.dumps({prompt_id: entry} if entry else {}).encode())
        elif method == "GET" and path == "/view":
            name = query.get("filename", [""])[0]
            data = self.images.get(name)
            if data is None or self.mode == "no_file":
                await _send(send, 404, b"404: Not Found", "text/plain")
            else:
                await _send(send, 200, data, "image/png")
        elif method == "POST" and path == "/queue":
            self.deleted.extend(json.loads(body).get("delete", []))
            await _send(send, 200, b"{}")
        else:
            await _send(send, 404, b"404: Not Found", "text/plain")

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        client_id = query.get("clientId", [uuid.uuid4().hex])[0]
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._sockets[client_id] = queue
        await self._tell(send, client_id, "status", _status(0), counts=True)

        async def outgoing() -> None:
            while True:
                message = await queue.get()
                if message is None:
                    await send({"type": "websocket.close", "code": 1000})
                    return
                await send({"type": "websocket.send", "text": json.dumps(message)})

        async def incoming() -> None:
            while (await receive())["type"] != "websocket.disconnect":
                pass  # a client's close is answered at once, as ComfyUI does

        tasks = [asyncio.ensure_future(outgoing()), asyncio.ensure_future(incoming())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            self._sockets.pop(client_id, None)

    async def _tell(
        self, send: Any, client_id: str, kind: str, data: dict[str, Any], counts: bool
    ) -> None:
        if counts:
            self.progress_messages[client_id] = self.progress_messages.get(client_id, 0) + 1
        await send({"type": "websocket.send", "text": json.dumps({"type": kind, "data": data})})

    async def _prompt(self, body: dict[str, Any], send: Any) -> None:
        self.prompts.append(body)
        if self.mode == "refuse":
            answer = {
                "error": {"type": "prompt_outputs_failed_validation",
                          "message": "Prompt outputs failed validation", "details": ""},
                "node_errors": {"4": {"class_type": "CheckpointLoaderSimple", "errors": [
                    {"type": "value_not_in_list", "message": "Value not in list",
                     "details": "ckpt_name: 'sd_xl_base_1.0.safetensors' not in []"}]}},
            }  # fmt: skip
            await _send(send, 400, json.dumps(answer).encode())
            return
        prompt_id = str(uuid.uuid4())
        await _send(
            send, 200, json.dumps({"prompt_id": prompt_id, "number": 1, "node_errors": {}}).encode()
        )
        asyncio.get_running_loop().create_task(self._execute(prompt_id, body))

    async def _execute(self, prompt_id: str, body: dict[str, Any]) -> None:
        client_id = body.get("client_id", "")
        queue = self._sockets.get(client_id)
        if queue is None:
            return

        def out(kind: str, data: dict[str, Any], counts: bool = False) -> None:
            if counts:
                self.progress_messages[client_id] = self.progress_messages.get(client_id, 0) + 1
            queue.put_nowait({"type": kind, "data": data})

        out("status", _status(1), counts=True)
        if self.mode == "hang":
            return  # stays in the queue until the client gives up
        graph = body["prompt"]
        sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")
        latent = next(n for n in graph.values() if n["class_type"] == "EmptyLatentImage")
        save_id = next(k for k, n in graph.items() if n["class_type"] == "SaveImage")
        steps = int(sampler["inputs"]["steps"])
        out("execution_start", {"prompt_id": prompt_id}, counts=True)
        out("executing", {"node": "3", "prompt_id": prompt_id})
        for k in range(1, steps + 1):
            out("progress", {"value": k, "max": steps, "prompt_id": prompt_id, "node": "3"},
                counts=True)  # fmt: skip
            if k == self.gate_at:
                self.reached.set()
                await asyncio.to_thread(self.release.wait, 30)
            if self.mode == "drop" and k == 2:
                queue.put_nowait(None)
                return
        if self.mode == "node_error":
            out("execution_error", {
                "prompt_id": prompt_id, "node_id": "3", "node_type": "KSampler",
                "exception_type": "torch.OutOfMemoryError",
                "exception_message": "CUDA out of memory"})  # fmt: skip
            return
        name = f"devserver_{len(self.images) + 1:05d}_.png"
        if self.mode == "not_png":
            self.images[name] = b"GIF89a not a png"
        else:
            picture = Image.new(
                "RGB", (int(latent["inputs"]["width"]), int(latent["inputs"]["height"])), "teal"
            )
            data = io.BytesIO()
            picture.save(data, "PNG")
            self.images[name] = data.getvalue()
        outputs = {} if self.mode == "no_output" else {
            save_id: {"images": [{"filename": name, "subfolder": "", "type": "output"}]}
        }  # fmt: skip
        out("executed", {"node": save_id, "output": outputs.get(save_id, {}),
                         "prompt_id": prompt_id})  # fmt: skip
        out("execution_success", {"prompt_id": prompt_id})
        # As ComfyUI: the history is written, then "executing" with node None is sent.
        self.history[prompt_id] = {
            "prompt": [1, prompt_id, graph, {}, [save_id]],
            "outputs": outputs,
            "status": {"status_str": "success", "completed": True, "messages": []},
        }
        out("executing", {"node": None, "prompt_id": prompt_id})


def _status(remaining: int) -> dict[str, Any]:
    return {"status": {"exec_info": {"queue_remaining": remaining}}}


async def _send(send: Any, status: int, body: bytes, kind: str = "application/json") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", kind.encode()), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------- chat


class FakeChat:
    """An OpenAI-compatible chat server on 127.0.0.1 (``/v1/chat/completions``, streamed).

    ``mode``: ``ok`` (the answer is ``«<last line of the prompt>»``, streamed in
    ``pieces`` chunks); ``no_usage`` (never sends ``usage``); ``busy`` (the first
    ``failures`` requests get 429), ``down`` (they get 503); ``cut`` (every stream
    stops before ``[DONE]``); ``unauthorized`` (401 echoing the key, as servers do);
    ``garbled`` (a chunk that is not JSON); ``stream_error`` (an error chunk).

    Attributes:
        requests: every request body, with its ``Authorization`` header apart.
        usage: the token counts it reports.
        gate_after: when set, the stream waits after this many chunks until ``release``.
    """

    usage = {"prompt_tokens": 31, "completion_tokens": 7, "total_tokens": 38}

    def __init__(
        self, mode: str = "ok", *, failures: int = 1, pieces: int = 4, gate_after: int | None = None
    ) -> None:
        self.mode = mode
        self.failures = failures
        self.pieces = pieces
        self.gate_after = gate_after
        self.reached = threading.Event()
        self.release = threading.Event()
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.answers: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                fake.requests.append(body)
                fake.authorizations.append(self.headers.get("Authorization"))
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": "not found"}})
                attempt = len(fake.requests)
                if fake.mode in ("busy", "down") and attempt <= fake.failures:
                    status = 429 if fake.mode == "busy" else 503
                    return self._json(status, {"error": {"message": "slow down"}})
                if fake.mode == "unauthorized":
                    key = (self.headers.get("Authorization") or "")[7:]
                    message = f"Incorrect API key provided: {key}"
                    return self._json(401, {"error": {"message": message}})
                self._stream(body)

            def _json(self, status: int, data: Any) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, body: dict[str, Any]) -> None:
                prompt = body["messages"][-1]["content"]
                answer = fake.answer_for(prompt)
                fake.answers.append(answer)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                model = body["model"]

                def chunk(data: dict[str, Any]) -> None:
                    self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
                    self.wfile.flush()

                self.wfile.write(b": OPENROUTER PROCESSING\n\n")
                parts = split(answer, fake.pieces)
                for i, part in enumerate(parts):
                    chunk({"id": "c1", "object": "chat.completion.chunk", "model": model,
                           "choices": [{"index": 0, "delta": {"content": part},
                                        "finish_reason": None}]})  # fmt: skip
                    if fake.mode == "garbled" and i == 0:
                        self.wfile.write(b"data: {not json\n\n")
                        return
                    if fake.mode == "stream_error" and i == 0:
                        chunk({"error": {"message": "provider overloaded", "code": 502}})
                        return
                    if fake.mode == "cut" and i == 1:
                        return  # the connection closes without [DONE]
                    if fake.gate_after is not None and i + 1 == fake.gate_after:
                        fake.reached.set()
                        fake.release.wait(30)
                stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
                chunk({"id": "c1", "object": "chat.completion.chunk", "model": model,
                       "choices": [stop]})  # fmt: skip
                wants_usage = (body.get("stream_options") or {}).get("include_usage")
                if wants_usage and fake.mode != "no_usage":
                    chunk({"id": "c1", "object": "chat.completion.chunk", "model": model,
                           "choices": [], "usage": fake.usage})  # fmt: skip
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def answer_for(prompt: str) -> str:
        """The fake's answer: the prompt's last line in guillemets."""
        return f"«{prompt.rsplit(chr(10), 1)[-1]}»"

    def __enter__(self) -> FakeChat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def split(text: str, pieces: int) -> list[str]:
    """``text`` in ``pieces`` consecutive parts (fewer when it is shorter)."""
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def iter_progress(frames: Iterator[Any]) -> Iterator[Any]:
    """The progress events among parsed SSE events."""
    return (frame for frame in frames if frame.event == "progress")
