"""Pipeline configs are data files validated on load; a bad one names its file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devserver import ConfigError, load_config, load_configs

GOOD: dict[str, Any] = {
    "name": "mine",
    "description": "A test config.",
    "translate_to": "en",
    "interception": {"kind": "stille_post", "languages": ["fr", "es"]},
    "outputs": [{"kind": "image", "name": "picture", "width": 64, "height": 64, "steps": 3}],
}


def write(folder: Path, data: dict[str, Any], name: str = "mine") -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_shipped_configs_load_with_the_required_ones() -> None:
    configs = load_configs()
    assert {"stillepost", "dada", "image_and_sound"} <= set(configs)
    assert configs["stillepost"].interception.iterations == 8
    assert configs["dada"].interception.iterations == 1
    kinds = [o.kind for o in configs["image_and_sound"].outputs]
    assert kinds == ["image", "audio"]


def test_shipped_configs_use_only_glossary_languages() -> None:
    from devserver.pipeline.backends import LocalBackend

    languages = set(LocalBackend().languages)
    for config in load_configs().values():
        assert config.translate_to in languages
        assert set(getattr(config.interception, "languages", [])) <= languages


def test_good_file_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.interception.iterations == 3
    assert config.summary()["outputs"][0]["width"] == 64


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"interception": {"kind": "stille_post", "languages": ["fr", "fr"]}},
            "interception.stille_post.languages",
        ),
        (
            {"interception": {"kind": "stille_post", "languages": ["french"]}},
            "interception.stille_post.languages.0",
        ),
        ({"interception": {"kind": "telephone"}}, "interception"),
        ({"outputs": []}, "outputs"),
        (
            {"outputs": [{"kind": "image", "name": "p", "width": 99999, "height": 64, "steps": 3}]},
            "outputs.0.image.width",
        ),
        (
            {
                "outputs": [
                    {
                        "kind": "audio",
                        "name": "t",
                        "duration_s": 2,
                        "sample_rate": 22050,
                        "prompt": "no placeholder",
                    }
                ]
            },
            "outputs.0.audio.prompt",
        ),
        ({"colour": "blue"}, "colour"),
        ({"name": "other"}, "name"),
        ({"descriptions": {"deutsch": "Ein Test."}}, "descriptions.deutsch.[key]"),
        ({"descriptions": {"de": ""}}, "descriptions.de"),
        (
            {
                "outputs": [
                    {
                        "kind": "image",
                        "name": "p",
                        "labels": {"de": "x" * 501},
                        "width": 64,
                        "height": 64,
                        "steps": 3,
                    }
                ]
            },
            "outputs.0.image.labels.de",
        ),
    ],
)
def test_bad_file_names_the_file_and_the_field(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    path = write(tmp_path, {**GOOD, **change})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"field '{field}'" in message


def test_every_shipped_config_speaks_german_and_english() -> None:
    for config in load_configs().values():
        summary = config.summary()
        assert summary["descriptions"]["de"] and summary["description"]
        for output in config.outputs:
            assert output.labels["de"] and output.labels["en"]


def test_duplicate_output_names_are_refused(tmp_path: Path) -> None:
    output = GOOD["outputs"][0]
    with pytest.raises(ConfigError, match="output names must be unique"):
        load_config(write(tmp_path, {**GOOD, "outputs": [output, output]}))


def test_not_json_is_refused_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.json: not valid JSON"):
        load_configs(tmp_path)


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no pipeline configs"):
        load_configs(tmp_path)
