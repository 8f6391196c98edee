"""The runs the benchmarks export: Stille Post-shaped, recorded through the real tracker."""

from __future__ import annotations

from pathlib import Path

from execution_history import ExecutionRecord, ExecutionTracker, ItemType

LANGUAGES = ["de", "en", "fr", "es", "it", "pt", "nl", "sv"]


def write_photo(path: Path, seed: int, size: int = 1024) -> None:
    """A photo-like PNG: a colour gradient, shapes and some grain (not a flat test card)."""
    from PIL import Image, ImageDraw

    gradient = Image.linear_gradient("L").resize((size, size))
    noise = Image.effect_noise((size, size), 24)
    image = Image.merge("RGB", (gradient, noise, gradient.rotate(90 + seed)))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 5, size // 5, size * 4 // 5, size * 4 // 5), fill=(240, 150, 40))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def stille_post_record(
    media_dir: Path,
    *,
    iterations: int = 8,
    outputs: int = 3,
    person: int = 0,
    image_size: int = 1024,
    write_media: bool = True,
) -> ExecutionRecord:
    """A finished run: stage 1, ``iterations`` translations, ``outputs`` square images.

    ``person`` picks one of 25 children in 4 classes (user and session ids);
    without ``write_media`` the images (``output_<n>.png``, ``image_size``
    pixels square) are referenced but not drawn: the caller provides them.
    """
    tracker = ExecutionTracker(
        "stillepost",
        safety_level="kids",
        user_id=f"bench-child-{person % 25}",
        session_id=f"bench-class-{person % 4}",
        media_dir=media_dir,
        software_version="0.1.0",
        model_versions={"translator": "1"},
    )
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input("Ein Hund spielt im Garten unter einem Apfelbaum")
            tracker.log_translation(
                "A dog plays in the garden under an apple tree",
                from_lang="de",
                to_lang="en",
                model="translator",
                backend="local",
                duration_ms=12.0,
            )
            tracker.log_safety_check(passed=True, metadata={"matched_terms": []})
        with tracker.stage(2):
            for n in range(1, iterations + 1):
                with tracker.stage_iteration(n):
                    tracker.log_interception_iteration(
                        f"Iteration {n}: a dog plays in the garden under an apple tree, "
                        "the sun is shining and children are laughing nearby.",
                        from_lang=LANGUAGES[(n - 1) % 8],
                        to_lang=LANGUAGES[n % 8],
                        model="translator",
                        backend="local",
                        duration_ms=8.5,
                        metadata={"seed": 1234, "temperature": 0.7},
                    )
            tracker.log_interception_final("Ein Hund spielt im Garten")
        for loop in range(1, outputs + 1):
            with tracker.loop_iteration(loop):
                with tracker.stage(3):
                    tracker.log_safety_check(passed=True, metadata={"level": "kids"})
                with tracker.stage(4):
                    name = f"output_{loop}.png"
                    if write_media:
                        write_photo(media_dir / name, loop, image_size)
                    tracker.log_output(
                        ItemType.OUTPUT_IMAGE,
                        {
                            "path": name,
                            "mime_type": "image/png",
                            "width": image_size,
                            "height": image_size,
                        },
                        model="image-model",
                        backend="local",
                        duration_ms=900.0,
                        metadata={"seed": 1234 + loop, "steps": 25, "cfg": 7.0},
                    )
    return tracker.finalize()
