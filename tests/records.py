"""Builders of realistic records for tests, recorded through the real tracker."""

from __future__ import annotations

import io
import wave
from pathlib import Path

from execution_history import ExecutionRecord, ExecutionTracker, ItemType

STILLE_POST_LANGUAGES = ["de", "en", "fr", "es", "it", "pt", "nl", "sv", "de"]
STILLE_POST_TEXTS = [
    "A dog plays in the garden",
    "Un chien joue dans le jardin",
    "Un perro juega en el jardín",
    "Un cane gioca nel giardino",
    "Um cão brinca no jardim",
    "Een hond speelt in de tuin",
    "En hund leker i trädgården",
    "Ein Hund spielt im Garten",
]


def write_png(path: Path, size: tuple[int, int] = (64, 48), colour: str = "teal") -> None:
    """A real PNG file drawn with Pillow."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).ellipse((4, 4, size[0] - 4, size[1] - 4), fill="orange")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def write_wav(path: Path, seconds: float = 0.2, rate: int = 8000) -> None:
    """A real (silent) mono WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(b"\x00\x00" * int(seconds * rate))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def log_stille_post(
    tracker: ExecutionTracker,
    media_dir: Path | None = None,
    prompt: str = "Ein Hund spielt im Garten",
    blocked_output: int | None = 2,
) -> None:
    """Record a whole Stille Post run on ``tracker``: 8 iterations, 3 outputs.

    Output ``blocked_output`` is blocked at stage 3 (None: every output passes).
    With ``media_dir``, real image files are written there and referenced.
    """
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input(prompt)
            tracker.log_translation(
                "A dog plays in the garden",
                from_lang="de",
                to_lang="en",
                model="glossary-translator",
                backend="local",
                duration_ms=0.4,
            )
            tracker.log_safety_check(passed=True, metadata={"matched_terms": []})
        with tracker.stage(2):
            for i, text in enumerate(STILLE_POST_TEXTS, start=1):
                with tracker.stage_iteration(i):
                    tracker.log_interception_iteration(
                        text,
                        from_lang=STILLE_POST_LANGUAGES[i - 1],
                        to_lang=STILLE_POST_LANGUAGES[i],
                        model="glossary-translator",
                        backend="local",
                        duration_ms=0.2,
                        metadata={"seed": 1234},
                    )
            tracker.log_interception_final(STILLE_POST_TEXTS[-1])
        for j in (1, 2, 3):
            with tracker.loop_iteration(j):
                with tracker.stage(3):
                    if j == blocked_output:
                        tracker.log_blocked(
                            "not suitable for kids", metadata={"matched_terms": ["scary"]}
                        )
                        continue
                    tracker.log_safety_check(passed=True, metadata={"level": "kids"})
                with tracker.stage(4):
                    name = f"output_{j}.png"
                    if media_dir is not None:
                        write_png(media_dir / name, colour=("teal", "navy", "plum")[j - 1])
                    tracker.log_output(
                        ItemType.OUTPUT_IMAGE,
                        {"path": name, "mime_type": "image/png", "width": 64, "height": 48},
                        model="procedural-image",
                        backend="local",
                        duration_ms=3.5,
                        metadata={"seed": 1234 + j, "steps": 20, "width": 64, "height": 48},
                    )


def stille_post_record(
    media_dir: Path | None = None,
    *,
    prompt: str = "Ein Hund spielt im Garten",
    user_id: str = "child-42",
    session_id: str = "class-7b",
) -> ExecutionRecord:
    """A Stille Post run: 8 iterations, 3 outputs (2 images generated, 1 blocked).

    With ``media_dir``, real image files are written there and referenced.
    """
    tracker = ExecutionTracker(
        "stillepost",
        safety_level="kids",
        user_id=user_id,
        session_id=session_id,
        media_dir=media_dir,
        software_version="0.1.0",
        model_versions={"glossary-translator": "1"},
    )
    log_stille_post(tracker, media_dir, prompt)
    return tracker.finalize()
