"""A short tune synthesised from a prompt and a seed, written as a WAV file with the stdlib.

Each word of the prompt picks a note of a pentatonic scale (so any sequence
sounds pleasant); the seed picks the key and the tempo. The tune repeats until
the requested duration is filled. Sine tones with a soft overtone and a short
fade in and out per note, 16-bit mono PCM.
"""

from __future__ import annotations

import hashlib
import math
import sys
import wave
from array import array
from pathlib import Path

from ._image import seeded_rng
from ._words import tokens

_PENTATONIC = (0, 2, 4, 7, 9)
_FADE_S = 0.01
_AMPLITUDE = 0.35 * 32767


def _word_degree(word: str) -> int:
    return hashlib.sha256(word.casefold().encode("utf-8", "surrogatepass")).digest()[0] % (
        2 * len(_PENTATONIC)
    )


def synthesise_tune(
    prompt: str, path: Path, *, duration_s: float, sample_rate: int, seed: int
) -> None:
    """Write a tune for ``prompt`` to ``path`` (WAV, mono, 16 bit).

    Args:
        prompt: the text the melody is derived from (one note per word).
        path: the WAV file to write (its folder must exist).
        duration_s: playing time in seconds.
        sample_rate: samples per second.
        seed: the random seed (key and tempo).
    """
    rng = seeded_rng(prompt, seed, "audio")
    root_midi = 57 + rng.randrange(7)  # between A3 and D#4
    beat_s = rng.choice((0.2, 0.25, 0.3, 0.4))
    degrees = [_word_degree(w) for w in tokens(prompt)] or [rng.randrange(10) for _ in range(4)]
    frequencies = []
    for degree in degrees:
        octave, step = divmod(degree, len(_PENTATONIC))
        midi = root_midi + 12 * octave + _PENTATONIC[step]
        frequencies.append(440.0 * 2 ** ((midi - 69) / 12))
    total = max(1, int(duration_s * sample_rate))
    note_len = max(1, int(beat_s * sample_rate))
    fade = max(1, int(_FADE_S * sample_rate))
    samples = array("h", bytes(2 * total))
    two_pi = 2 * math.pi
    for start in range(0, total, note_len):
        freq = frequencies[(start // note_len) % len(frequencies)]
        length = min(note_len, total - start)
        w1 = two_pi * freq / sample_rate
        w2 = 2 * w1
        for n in range(length):
            envelope = min(1.0, n / fade, (length - n) / fade)
            value = math.sin(w1 * n) + 0.3 * math.sin(w2 * n)
            samples[start + n] = int(_AMPLITUDE * envelope * value / 1.3)
    if sys.byteorder == "big":  # WAV samples are little-endian
        samples.byteswap()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.tobytes())
