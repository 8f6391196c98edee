"""Pipeline configs: one data file per config in ``devserver/configs``, validated on load.

A config names the stage-2 interception (``stille_post`` or ``dada``) and the
outputs of stages 3 and 4. ``load_configs`` reads a folder of ``*.json``
files; a bad file raises ``ConfigError`` naming the file and the field.
"""

from __future__ import annotations

import itertools
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2}$", description="ISO 639-1 code")]
#: A text in other languages, by ISO 639-1 code; the UI shows the one of its language.
Translations = dict[LanguageCode, Annotated[str, Field(min_length=1, max_length=500)]]
OutputName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
#: The text sent to an output's generator; ``{text}`` is replaced by the interception's result.
PromptTemplate = Annotated[str, Field(pattern=r"\{text\}", max_length=500)]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


class StillePost(BaseModel):
    """Chained translations through ``languages`` and back to the input language.

    With n languages the chain has n + 1 translations (stage iterations 1..n+1).
    """

    model_config = _STRICT
    kind: Literal["stille_post"]
    languages: list[LanguageCode] = Field(min_length=1, max_length=20)

    @field_validator("languages")
    @classmethod
    def _no_repeat_in_a_row(cls, value: list[str]) -> list[str]:
        for a, b in itertools.pairwise(value):
            if a == b:
                raise ValueError(f"{a!r} follows itself; a translation needs two languages")
        return value

    @property
    def iterations(self) -> int:
        """Stage-2 iterations: one translation per language, plus the way back."""
        return len(self.languages) + 1


class Dada(BaseModel):
    """One Dada pass over the text (a cut-up)."""

    model_config = _STRICT
    kind: Literal["dada"]

    @property
    def iterations(self) -> int:
        """Stage-2 iterations: always one."""
        return 1


class _OutputFields(BaseModel):
    """What every output has: ``name`` (its id), ``labels`` (its name in the UI's
    languages) and ``prompt`` (default ``{text}``), what stage 3 checks and stage 4 makes."""

    model_config = _STRICT
    name: OutputName
    labels: Translations = Field(default_factory=dict)
    prompt: PromptTemplate = "{text}"


class ImageOutput(_OutputFields):
    """An image of ``width`` × ``height`` pixels made in ``steps`` steps."""

    kind: Literal["image"]
    width: int = Field(ge=16, le=2048)
    height: int = Field(ge=16, le=2048)
    steps: int = Field(ge=1, le=500)


class AudioOutput(_OutputFields):
    """A piece of audio of ``duration_s`` seconds at ``sample_rate`` samples per second."""

    kind: Literal["audio"]
    duration_s: float = Field(gt=0, le=30)
    sample_rate: int = Field(ge=8000, le=48000)


Interception = Annotated[StillePost | Dada, Field(discriminator="kind")]
Output = Annotated[ImageOutput | AudioOutput, Field(discriminator="kind")]


class PipelineConfig(BaseModel):
    """One pipeline: what stage 2 does and which outputs stages 3 and 4 make.

    Attributes:
        name: the config's name; equal to its file name without ``.json``.
        description: one or two sentences for the UI.
        descriptions: the description in other languages (``{"de": "…"}``).
        translate_to: the language of the stage-1 translation that is checked
            together with the original text.
        interception: the stage-2 transformation.
        outputs: the outputs, each checked (stage 3) and generated (stage 4)
            in one loop iteration, numbered from 1 in this order.
    """

    model_config = _STRICT
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = Field(min_length=1, max_length=500)
    descriptions: Translations = Field(default_factory=dict)
    translate_to: LanguageCode
    interception: Interception
    outputs: list[Output] = Field(min_length=1, max_length=8)

    @model_validator(mode="after")
    def _unique_output_names(self) -> PipelineConfig:
        names = [o.name for o in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError("output names must be unique")
        return self

    def summary(self) -> dict[str, Any]:
        """The config as ``GET /api/configs`` lists it."""
        return {
            "name": self.name,
            "description": self.description,
            "descriptions": dict(self.descriptions),
            "stages": [1, 2, 3, 4],
            "interception": self.interception.model_dump(),
            "iterations": self.interception.iterations,
            "translate_to": self.translate_to,
            "outputs": [o.model_dump() for o in self.outputs],
        }


def _where(error: Any) -> str:
    return ".".join(str(part) for part in error.get("loc", ())) or "(top level)"


def load_config(path: Path) -> PipelineConfig:
    """Read and validate one config file.

    Raises:
        ConfigError: unreadable, not JSON, invalid (the message names the file
            and each bad field), or its ``name`` differs from the file name.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"field '{_where(e)}': {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
    if config.name != Path(path).stem:
        raise ConfigError(
            f"{path}: field 'name': {config.name!r} must equal the file name {Path(path).stem!r}"
        )
    return config


def shipped_configs_dir() -> Path:
    """The folder of configs shipped with the package."""
    return Path(str(resources.files("devserver").joinpath("configs")))


def load_configs(folder: Path | None = None) -> dict[str, PipelineConfig]:
    """Every ``*.json`` config in ``folder`` (the shipped ones when None), by name.

    Raises:
        ConfigError: a bad file (see ``load_config``), or a folder without configs.
    """
    folder = Path(folder) if folder is not None else shipped_configs_dir()
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise ConfigError(f"{folder}: no pipeline configs (*.json) found")
    configs = [load_config(p) for p in paths]
    return {c.name: c for c in configs}
