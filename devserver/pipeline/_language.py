"""The prompt's language, told by py3langid's bundled model, with how sure it is."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any

#: Dialects and varieties the model tells apart, counted as their ISO 639-3 macrolanguage:
#: a child writing Arabic or Chinese wrote Arabic or Chinese, whichever variety the
#: model leans to for a short text (it splits "一只狗在花园里玩" between zh and wuu).
MACROLANGUAGES = {"ary": "ar", "arz": "ar", "wuu": "zh", "yue": "zh", "uzs": "uz"}

#: The model's label for text without language (digits, emoji only); never a language.
NO_LANGUAGE = "zxx"

#: Below this probability the detector does not say: a short or mixed text stays None.
DEFAULT_THRESHOLD = 0.5

_lock = threading.Lock()
_model: Any = None


def _identifier() -> Any:
    """py3langid's identifier, loaded once per process (about a second; read-only after).

    The model is immutable data shipped inside the package, like a file read
    through importlib.resources, so one copy serves every app and thread.
    """
    global _model
    with _lock:
        if _model is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return _model


def warm_up() -> None:
    """Load the model now instead of at the first detection.

    ``serve`` calls it on a background thread at start, so the first child's
    run does not wait the second the load takes; ``devserver run`` does not
    (it detects once, and needs the model right away anyway).
    """
    _identifier()


@dataclass(frozen=True, slots=True)
class Detection:
    """What the detector said about one text.

    Attributes:
        language: the ISO 639 code when ``confidence`` reached the threshold; else None.
        confidence: the probability (0 to 1) of ``candidate`` among the model's languages.
        candidate: the most probable language, even when it is not sure enough.
        detector: the detector's name and version, for the record.
        threshold: the probability ``confidence`` had to reach.
    """

    language: str | None
    confidence: float
    candidate: str | None
    detector: str
    threshold: float

    def metadata(self) -> dict[str, Any]:
        """The fields recorded on the ``user_input_text`` item."""
        return {
            "language": self.language,
            "language_source": "detected",
            "language_confidence": self.confidence,
            "language_candidate": self.candidate,
            "language_detector": self.detector,
            "language_threshold": self.threshold,
        }


class LanguageDetector:
    """Tells a text's language with py3langid (a naive Bayes model over byte n-grams).

    Thread-safe and shared by concurrent runs. The model is loaded on first use.

    Args:
        threshold: the probability the best language needs to be named.
    """

    name = "py3langid"

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.version = metadata.version("py3langid")

    def detect(self, text: str) -> Detection:
        """The language of ``text``; ``language`` is None when the model is not sure.

        Never invents: a text too short, mixed, or without letters gives None
        (with the model's best candidate and its probability kept for the record).
        """
        ranked = _identifier().rank(text)
        folded: dict[str, float] = {}
        for code, probability in ranked:
            code = MACROLANGUAGES.get(code, code)
            folded[code] = folded.get(code, 0.0) + float(probability)
        candidate, confidence = max(folded.items(), key=lambda kv: kv[1])
        confidence = round(confidence, 4)
        if candidate == NO_LANGUAGE:
            candidate_out: str | None = None
        else:
            candidate_out = candidate
        sure = candidate_out is not None and confidence >= self.threshold
        return Detection(
            language=candidate_out if sure else None,
            confidence=confidence,
            candidate=candidate_out,
            detector=f"{self.name} {self.version}",
            threshold=self.threshold,
        )
