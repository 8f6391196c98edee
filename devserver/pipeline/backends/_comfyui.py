"""The ``comfyui`` backend: stage-4 images made by a ComfyUI server from a workflow template.

One output is one exchange with ComfyUI's own API:

1. open ``WS /ws?clientId=<random>`` first, so no message about the prompt is missed;
2. ``POST /prompt`` ``{"prompt": <filled workflow>, "client_id": …}`` → ``prompt_id``
   (a 400 with ``node_errors`` is a workflow ComfyUI refuses);
3. read the WebSocket until ``executing`` with ``node: null`` for that prompt
   (ComfyUI sends it after the prompt is in its history): ``status``
   (``queue_remaining``) until ``execution_start``, ``progress`` (``value`` of
   ``max``) are reported to the step's progress board; ``execution_error`` or
   ``execution_interrupted`` fail the output;
4. ``GET /history/{prompt_id}`` names the files of the workflow's ``SaveImage``
   node; ``GET /view`` fetches the first; it must be a PNG, and is written into
   the run's media folder (the finaliser adds its size and sha256).

Every failure is a typed ``BackendError``, which the orchestrator records as
a failure of that output only: server down (``BackendUnavailable``, after
retries of the connection), past the deadline (``BackendTimeout``; the prompt
is then taken out of ComfyUI's queue), refused or failing workflow
(``WorkflowFailed``), no file (``MissingOutput``), an answer that is not
ComfyUI's (``BackendBadResponse``).

``websockets`` (the ``comfyui`` extra) is imported when the backend is made.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from ._base import (
    BackendBadResponse,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    MediaResult,
    MissingOutput,
    TextResult,
    WorkflowFailed,
)
from ._openai import public_url
from ._progress import report
from ._workflow import FilledWorkflow

_PNG = b"\x89PNG\r\n\x1a\n"
_MAX_JSON_BYTES = 8_000_000
_MAX_FILE_BYTES = 256 * 1024 * 1024
#: Looks at ``/history`` for a prompt ComfyUI said it finished, before giving up.
_HISTORY_LOOKS = 5


def missing_extra() -> str | None:
    """Why the backend cannot be made here (None when it can)."""
    try:
        import websockets.sync.client  # noqa: F401
    except ImportError:
        return (
            "the comfyui backend needs the 'websockets' package: "
            "pip install 'execution-history[comfyui]'"
        )
    return None


@dataclass(frozen=True, slots=True)
class ComfyUIOptions:
    """Where and how to reach a ComfyUI server (``DEVSERVER_COMFYUI_*``).

    Attributes:
        url: the server's base URL, e.g. ``http://127.0.0.1:8188``.
        timeout_s: deadline of one output (queue, sampling, download).
        retries: further attempts to connect when the server refuses.
    """

    url: str
    timeout_s: float = 300.0
    retries: int = 2


class ComfyUIBackend:
    """Runs filled workflows on one ComfyUI server.

    Args:
        url: the server's base URL (``DEVSERVER_COMFYUI_URL``), e.g. ``http://127.0.0.1:8188``.
        timeout_s: deadline of one output, from connecting to the file written
            (waiting in ComfyUI's queue included).
        retries: further attempts to connect when the server refuses.
        backoff_s: wait before the first retry; doubled for each further one.
    """

    name = "comfyui"

    def __init__(
        self, url: str, *, timeout_s: float = 300.0, retries: int = 2, backoff_s: float = 0.5
    ) -> None:
        problem = missing_extra()
        if problem is not None:
            raise ValueError(problem)
        self.base_url = url.strip().rstrip("/")
        if "://" not in self.base_url:
            self.base_url = "http://" + self.base_url
        self.public_url = public_url(self.base_url)
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    def model_versions(self) -> dict[str, str | None]:
        """Nothing before a run: the checkpoint of each output is on its item."""
        return {}

    # ------------------------------------------------------------------ the one job

    def run_workflow(self, workflow: FilledWorkflow, path: Path) -> MediaResult:
        """Run ``workflow`` and write its image to ``path``.

        Returns:
            The image, with ``params`` = ``prompt_id`` and ``comfyui_url`` (what
            was sent is the caller's to record: it filled the workflow).

        Raises:
            BackendError: see the module's docstring.
        """
        deadline = time.monotonic() + self.timeout_s
        client_id = uuid.uuid4().hex
        # Entered as a context manager, as websockets asks (it closes the socket on exit).
        with self._connect(client_id, deadline) as socket_:
            prompt_id = self._submit(workflow.graph, client_id, deadline)
            try:
                self._follow(socket_, prompt_id, deadline)
            except BackendTimeout:
                self._forget(prompt_id)
                raise
        image = self._image_of(prompt_id, workflow, deadline)
        data = self._get("/view?" + urlencode(image), deadline, _MAX_FILE_BYTES, missing=True)
        if not data.startswith(_PNG):
            raise BackendBadResponse(f"ComfyUI's output {image['filename']!r} is not a PNG image")
        width, height = _png_size(data)
        part = path.with_name(path.name + ".part")
        part.write_bytes(data)
        os.replace(part, path)
        return MediaResult(
            path,
            "image/png",
            model=workflow.checkpoint or workflow.name,
            backend=self.name,
            params={"prompt_id": prompt_id, "comfyui_url": self.public_url},
            width=width,
            height=height,
        )

    # ------------------------------------------------------------------ the exchange

    def _connect(self, client_id: str, deadline: float) -> Any:
        from websockets.exceptions import InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = urlunsplit((scheme, parts.netloc, parts.path + "/ws", f"clientId={client_id}", ""))
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout()
            try:
                return connect(
                    url, open_timeout=remaining, close_timeout=2.0, max_size=_MAX_JSON_BYTES
                )
            except TimeoutError:
                raise self._timeout() from None
            except (InvalidURI, InvalidHandshake) as exc:
                raise BackendBadResponse(
                    f"ComfyUI at {self.public_url} did not accept a WebSocket "
                    f"({type(exc).__name__})"
                ) from None
            except OSError as exc:  # refused, reset, unreachable
                reason = type(exc).__name__
            if attempt >= self.retries:
                raise BackendUnavailable(
                    f"ComfyUI at {self.public_url} is not reachable after {attempt + 1} "
                    f"attempts ({reason})"
                )
            time.sleep(self.backoff_s * 2**attempt)
            attempt += 1

    def _submit(self, graph: dict[str, Any], client_id: str, deadline: float) -> str:
        body = json.dumps({"prompt": graph, "client_id": client_id}).encode()
        request = urllib.request.Request(
            self.base_url + "/prompt",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._left(deadline)) as response:
                payload = response.read(_MAX_JSON_BYTES)
        except urllib.error.HTTPError as exc:
            with exc:
                reason = _refusal(exc.read(65536)) if exc.code == 400 else ""
            if exc.code == 400:
                raise WorkflowFailed("ComfyUI refused the workflow: " + reason) from None
            raise BackendBadResponse(f"ComfyUI answered HTTP {exc.code} to /prompt") from None
        except TimeoutError:
            raise self._timeout() from None
        except (urllib.error.URLError, ConnectionError) as exc:
            # Not retried: the prompt may have been queued before the connection broke.
            raise BackendUnavailable(
                f"ComfyUI at {self.public_url} lost the connection while taking the prompt "
                f"({type(getattr(exc, 'reason', exc)).__name__})"
            ) from None
        data = _json_object(payload, "/prompt")
        prompt_id = data.get("prompt_id")
        if not isinstance(prompt_id, str) or not prompt_id:
            raise BackendBadResponse("ComfyUI's answer to /prompt has no 'prompt_id'")
        return prompt_id

    def _follow(self, socket_: Any, prompt_id: str, deadline: float) -> None:
        """Read the WebSocket until the prompt is done; report queue and steps."""
        from websockets.exceptions import ConnectionClosed

        started = False
        while True:
            try:
                message = socket_.recv(timeout=self._left(deadline))
            except TimeoutError:
                raise self._timeout() from None
            except ConnectionClosed:
                raise BackendUnavailable(
                    f"ComfyUI at {self.public_url} closed the WebSocket before the image was made"
                ) from None
            if isinstance(message, bytes):
                continue  # preview images: not needed for the record or the page
            try:
                event = json.loads(message)
            except json.JSONDecodeError:
                raise BackendBadResponse(
                    "ComfyUI sent a WebSocket message that is not JSON"
                ) from None
            kind = event.get("type") if isinstance(event, dict) else None
            data = event.get("data") if isinstance(event, dict) else None
            if not isinstance(data, dict):
                continue
            about = data.get("prompt_id")
            if kind == "status" and not started:
                remaining = _queue_remaining(data)
                if remaining is not None:
                    report("queue", queue_remaining=remaining)
                continue
            # Older servers send progress without prompt_id; this socket is ours alone.
            if about is not None and about != prompt_id:
                continue
            if kind == "execution_start":
                started = True
                report("started")
            elif kind == "progress":
                value, most = data.get("value"), data.get("max")
                if _count(value) and _count(most):
                    report("steps", value=value, max=most, node=_text(data.get("node")))
            elif kind == "execution_error":
                raise WorkflowFailed(
                    f"ComfyUI failed in node {_text(data.get('node_id'))} "
                    f"({_text(data.get('node_type'))}): "
                    f"{_text(data.get('exception_type'))}: {_text(data.get('exception_message'))}"
                )
            elif kind == "execution_interrupted":
                raise WorkflowFailed("ComfyUI interrupted the workflow")
            elif kind == "executing" and data.get("node") is None and about == prompt_id:
                return  # sent after the prompt's history is written

    def _image_of(
        self, prompt_id: str, workflow: FilledWorkflow, deadline: float
    ) -> dict[str, str]:
        """``filename``, ``subfolder`` and ``type`` of the first image of an output node."""
        entry: Any = None
        for look in range(_HISTORY_LOOKS):
            history = _json_object(
                self._get(f"/history/{prompt_id}", deadline, _MAX_JSON_BYTES), "/history"
            )
            entry = history.get(prompt_id)
            if entry is not None:
                break
            time.sleep(0.05 * (look + 1))  # a server that announced the end a moment early
        if not isinstance(entry, dict):
            raise MissingOutput(f"ComfyUI has no history of prompt {prompt_id}")
        outputs = entry.get("outputs")
        outputs = outputs if isinstance(outputs, dict) else {}
        for node_id in workflow.output_nodes:
            node = outputs.get(node_id)
            images = node.get("images") if isinstance(node, dict) else None
            if isinstance(images, list) and images and isinstance(images[0], dict):
                first = images[0]
                if not isinstance(first.get("filename"), str):
                    raise BackendBadResponse("ComfyUI's history names an image without a file")
                return {
                    "filename": first["filename"],
                    "subfolder": _text(first.get("subfolder") or ""),
                    "type": _text(first.get("type") or "output"),
                }
        raise MissingOutput(
            f"the workflow {workflow.name!r} finished without an image from node(s) "
            + ", ".join(workflow.output_nodes)
        )

    def _get(self, path: str, deadline: float, most: int, missing: bool = False) -> bytes:
        try:
            with urllib.request.urlopen(
                self.base_url + path, timeout=self._left(deadline)
            ) as response:
                payload: bytes = response.read(most + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            if missing and exc.code == 404:
                raise MissingOutput("ComfyUI has no file for the finished workflow") from None
            raise BackendBadResponse(f"ComfyUI answered HTTP {exc.code}") from None
        except TimeoutError:
            raise self._timeout() from None
        except (urllib.error.URLError, ConnectionError) as exc:
            raise BackendUnavailable(
                f"ComfyUI at {self.public_url} went away "
                f"({type(getattr(exc, 'reason', exc)).__name__})"
            ) from None
        if len(payload) > most:
            raise BackendBadResponse("ComfyUI's answer is larger than this backend takes")
        return payload

    def _forget(self, prompt_id: str) -> None:
        """Take a prompt we no longer wait for out of ComfyUI's queue (best effort).

        A prompt already running is left alone: ``/interrupt`` would stop whatever
        runs, which may be another client's prompt on older servers.
        """
        body = json.dumps({"delete": [prompt_id]}).encode()
        request = urllib.request.Request(
            self.base_url + "/queue",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with contextlib.suppress(Exception):
            urllib.request.urlopen(request, timeout=2.0).close()

    def _left(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout()
        return remaining

    def _timeout(self) -> BackendTimeout:
        return BackendTimeout(
            f"ComfyUI at {self.public_url} did not finish within {self.timeout_s:g} s"
        )

    # ------------------------------------------------------ the rest of the protocol

    def translate(self, text: str, from_lang: str | None, to_lang: str, seed: int) -> TextResult:
        """Not a text backend (configs are checked at load, so this is never reached)."""
        raise BackendError("the comfyui backend makes media only")

    def intercept(self, text: str, *, mode: str, language: str | None, seed: int) -> TextResult:
        """Not a text backend (see ``translate``)."""
        raise BackendError("the comfyui backend makes media only")

    def generate_image(
        self, prompt: str, path: Path, *, width: int, height: int, seed: int, steps: int
    ) -> MediaResult:
        """ComfyUI needs a workflow: outputs on it name one (``run_workflow``)."""
        raise BackendError("the comfyui backend needs a workflow; name one in the output config")

    def generate_audio(
        self, prompt: str, path: Path, *, duration_s: float, sample_rate: int, seed: int
    ) -> MediaResult:
        """Not made by this backend (see ``generate_image``)."""
        raise BackendError("the comfyui backend makes images only in this version")


def _text(value: object) -> str:
    return str(value)[:300]


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _queue_remaining(data: dict[str, Any]) -> int | None:
    status = data.get("status")
    info = status.get("exec_info") if isinstance(status, dict) else None
    value = info.get("queue_remaining") if isinstance(info, dict) else None
    return value if _count(value) else None


def _json_object(payload: bytes, where: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BackendBadResponse(f"ComfyUI's answer to {where} is not JSON") from None
    if not isinstance(data, dict):
        raise BackendBadResponse(f"ComfyUI's answer to {where} is not an object")
    return data


def _refusal(payload: bytes) -> str:
    """ComfyUI's reason for a 400: its error message and the first node's first error."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "no reason given"
    if not isinstance(data, dict):
        return "no reason given"
    error = data.get("error")
    parts = [_text(error.get("message")) if isinstance(error, dict) else _text(error or "")]
    nodes = data.get("node_errors")
    if isinstance(nodes, dict):
        for node_id, node in list(nodes.items())[:1]:
            errors = node.get("errors") if isinstance(node, dict) else None
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                first = errors[0]
                detail = first.get("details") or first.get("message")
                parts.append(
                    f"node {_text(node_id)} ({_text(node.get('class_type'))}): {_text(detail)}"
                )
    return "; ".join(part for part in parts if part) or "no reason given"


def _png_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from a PNG's IHDR chunk (None when it is not where PNG puts it)."""
    if len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None, None
