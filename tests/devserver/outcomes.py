"""Configs and cases for every outcome of a run's outputs: all or some blocked, failed, mixed."""

from __future__ import annotations

from typing import Any


def _image(name: str, width: int, zombie: bool = False) -> dict[str, Any]:
    output: dict[str, Any] = {"kind": "image", "name": name, "width": width, "height": 64}
    output["steps"] = 4
    if zombie:  # the age check at 'kids' blocks an output whose prompt names a zombie
        output["prompt"] = "{text}, with a zombie"
    return output


def _config(name: str, *outputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"Test config '{name}' for the outcomes of outputs.",
        "translate_to": "en",
        "interception": {"kind": "dada"},
        "outputs": list(outputs),
    }


#: Two outputs the age check blocks at 'kids'.
ZOMBIES = _config("zombies", _image("first", 64, True), _image("second", 80, True))
#: Two harmless outputs, widths 72 and 88 (a backend may be told to fail either).
PAIR = _config("pair", _image("left", 72), _image("right", 88))
#: Two harmless outputs (72, 88) and one the age check blocks (96).
TRIO = _config("trio", _image("one", 72), _image("two", 88), _image("three", 96, True))

OUTCOME_CONFIGS = (ZOMBIES, PAIR, TRIO)

#: name -> (config, widths that fail, status, outputs {done, blocked, failed})
OUTCOMES: dict[str, tuple[str, set[int], str, dict[str, int]]] = {
    "all blocked": ("zombies", set(), "no_output", {"done": 0, "blocked": 2, "failed": 0}),
    "some blocked": ("trio", set(), "partial", {"done": 2, "blocked": 1, "failed": 0}),
    "all failed": ("pair", {72, 88}, "no_output", {"done": 0, "blocked": 0, "failed": 2}),
    "some failed": ("pair", {88}, "partial", {"done": 1, "blocked": 0, "failed": 1}),
    "mixed, none made": ("trio", {72, 88}, "no_output", {"done": 0, "blocked": 1, "failed": 2}),
    "mixed, one made": ("trio", {88}, "partial", {"done": 1, "blocked": 1, "failed": 1}),
}
