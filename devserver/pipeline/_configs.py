"""Pipeline configs: one data file per config in ``devserver/configs``, validated on load.

A config names the stage-2 interception (``stille_post`` or ``dada``) and the
outputs of stages 3 and 4, and may name a backend per stage (``backends``)
and per output (``backend``; an output on ``comfyui`` names a workflow
template). ``load_configs`` reads a folder of ``*.json`` files; a bad file
raises ``ConfigError`` naming the file and the field. Whether a named backend
is configured on this server is checked when the app starts
(``_state.init_app``), with the same kind of message.
"""

from __future__ import annotations

import itertools
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .backends import WorkflowError, WorkflowTemplate

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


#: Backends a config may name (``None``: the server's ``DEVSERVER_BACKEND``).
TextBackendName = Literal["local", "ollama", "openai"]
ImageBackendName = Literal["local", "comfyui"]
#: The fields only a workflow uses; refused on a ``local`` output, where they would be ignored.
_WORKFLOW_FIELDS = ("workflow", "checkpoint", "sampler", "scheduler", "cfg", "negative_prompt")


class ImageOutput(_OutputFields):
    """An image of ``width`` × ``height`` pixels made in ``steps`` steps.

    With ``backend: "comfyui"`` it is made by the workflow template ``workflow``
    (``<config folder>/workflows/<name>.json``, else the shipped
    ``devserver/workflows/``), whose placeholders are filled from this output's
    fields (``checkpoint``, ``sampler``, ``scheduler``, ``cfg``, ``negative_prompt``)
    and from the run (``prompt``, ``seed``).
    """

    kind: Literal["image"]
    width: int = Field(ge=16, le=2048)
    height: int = Field(ge=16, le=2048)
    steps: int = Field(ge=1, le=500)
    backend: ImageBackendName | None = None
    workflow: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
    checkpoint: str | None = Field(default=None, min_length=1, max_length=255)
    sampler: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,64}$")
    scheduler: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,64}$")
    cfg: float | None = Field(default=None, ge=0, le=100)
    negative_prompt: str | None = Field(default=None, max_length=500)
    _template: WorkflowTemplate | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _workflow_fields(self) -> ImageOutput:
        if self.backend == "comfyui":
            if self.workflow is None:
                raise ValueError("an output on the comfyui backend must name a 'workflow'")
        else:
            for name in _WORKFLOW_FIELDS:
                if getattr(self, name) is not None:
                    raise ValueError(f"'{name}' is only used by outputs on the comfyui backend")
        return self

    @property
    def template(self) -> WorkflowTemplate | None:
        """The loaded workflow template (set by ``load_config``), None when not on ComfyUI."""
        return self._template

    def workflow_values(self, prompt: str, seed: int) -> dict[str, object]:
        """Every value a template may ask for, from this output and the run (None-free)."""
        values: dict[str, object] = {
            "prompt": prompt,
            "negative_prompt": self.negative_prompt if self.negative_prompt is not None else "",
            "seed": seed,
            "steps": self.steps,
            "width": self.width,
            "height": self.height,
        }
        for name in ("checkpoint", "sampler", "scheduler", "cfg"):
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        return values


class AudioOutput(_OutputFields):
    """A piece of audio of ``duration_s`` seconds at ``sample_rate`` samples per second."""

    kind: Literal["audio"]
    backend: Literal["local"] | None = None
    duration_s: float = Field(gt=0, le=30)
    sample_rate: int = Field(ge=8000, le=48000)


class StageBackends(BaseModel):
    """The backend of each text stage; an absent one is the server's ``DEVSERVER_BACKEND``."""

    model_config = _STRICT
    translation: TextBackendName | None = None
    interception: TextBackendName | None = None


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
    backends: StageBackends = Field(default_factory=StageBackends)

    @model_validator(mode="after")
    def _unique_output_names(self) -> PipelineConfig:
        names = [o.name for o in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError("output names must be unique")
        return self

    def stages(self) -> list[int]:
        """The stages a run of this config passes through when nothing stops it: 1, then 2
        for its interception, then 3 and 4 for its outputs (the model requires both)."""
        return [1] + ([2] if self.interception else []) + ([3, 4] if self.outputs else [])

    def named_backends(self) -> list[tuple[str, str]]:
        """Each backend this config names, with the field that names it (for start-up checks)."""
        named: list[tuple[str, str]] = [
            (f"backends.{stage}", name)
            for stage, name in (
                ("translation", self.backends.translation),
                ("interception", self.backends.interception),
            )
            if name is not None
        ]
        named += [
            (f"outputs.{i}.backend", output.backend)
            for i, output in enumerate(self.outputs)
            if output.backend is not None
        ]
        return named

    def listing(self) -> dict[str, Any]:
        """The config as ``GET /api/configs`` lists it."""
        return {
            "name": self.name,
            "description": self.description,
            "descriptions": dict(self.descriptions),
            "stages": self.stages(),
            "interception": self.interception.model_dump(),
            "iterations": self.interception.iterations,
            "translate_to": self.translate_to,
            "outputs": [o.model_dump(exclude_none=True) for o in self.outputs],
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
    for i, output in enumerate(config.outputs):
        if isinstance(output, ImageOutput) and output.workflow is not None:
            output._template = _load_workflow(Path(path), i, output)
    return config


def shipped_workflows_dir() -> Path:
    """The folder of workflow templates shipped with the package."""
    return Path(str(resources.files("devserver").joinpath("workflows")))


def _load_workflow(path: Path, index: int, output: ImageOutput) -> WorkflowTemplate:
    """The template an output names, checked against the values the output can give."""
    where = f"{path}: field 'outputs.{index}.workflow'"
    name = str(output.workflow)
    candidates = [
        path.parent / "workflows" / f"{name}.json",
        shipped_workflows_dir() / f"{name}.json",
    ]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ConfigError(
            f"{where}: no workflow {name!r} (looked for "
            + " and ".join(str(c) for c in candidates)
            + ")"
        )
    try:
        template = WorkflowTemplate.load(found)
    except WorkflowError as exc:
        raise ConfigError(f"{where}: {found} {exc}") from None
    given = output.workflow_values("", 0)
    missing = sorted(template.placeholders - set(given))
    if missing:
        fields = ", ".join(f"'outputs.{index}.{m}'" for m in missing)
        raise ConfigError(
            f"{path}: field {fields}: the workflow {name!r} has a placeholder for "
            f"{', '.join(missing)}; set it on the output"
        )
    return template


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
