"""One line of a run's journey per item, for ``devserver run`` (as it happens) and ``show``."""

from __future__ import annotations

from execution_history import STAGE_NAMES, ExecutionItem


def describe(item: ExecutionItem, iterations: int) -> str | None:
    """One line of the journey for ``item`` (None for items not worth a line)."""
    kind = str(item.item_type)
    meta = item.metadata
    timing = f" [{item.model}, {item.duration_ms:g} ms]" if item.duration_ms is not None else ""
    loop = f"output {item.loop_iteration}" if item.loop_iteration is not None else ""
    if kind == "pipeline_start":
        return None
    if kind == "stage_transition":
        to = meta.get("to_stage")
        return None if to == 5 else f"\n== Stage {to}: {STAGE_NAMES.get(int(to or 0), '')} =="
    if kind == "user_input_text":
        return f"  input ({meta.get('language') or 'language unknown'}): {item.content}"
    if kind in ("translation_result", "interception_iteration"):
        pair = (
            f"{meta.get('from_lang') or '?'} → {meta.get('to_lang')}" if "to_lang" in meta else ""
        )
        step = f"[{item.stage_iteration}/{iterations}] " if item.stage_iteration else ""
        label = pair or str(meta.get("mode") or item.model)
        if meta.get("translated") is False:  # the backend lacks a language: say so, not "None"
            lacking = meta.get("unsupported_language") or "?"
            return f"  {step}{label} not translated ({lacking} unsupported): {item.content}"
        return f"  {step}{label}: {item.content}{timing}"
    if kind == "interception_final":
        return f"  final: {item.content}"
    if kind in ("stage1_safety_check", "stage3_safety_check"):
        return f"  {loop + ' ' if loop else ''}safety check: {item.content}"
    if kind in ("stage1_blocked", "stage3_blocked"):
        return f"  BLOCKED: {item.content}"
    if kind.startswith("output_") and item.media is not None:
        media = item.media
        size = f"{media.width}×{media.height}" if media.width else f"{media.duration_s:g} s"
        return f"  {loop}: {kind.removeprefix('output_')} {size} → {media.path}{timing}"
    if kind == "output_failed":
        return f"  {loop} FAILED: {item.content}"
    if kind == "pipeline_error":
        return f"\n✘ error: {item.content}"
    if kind == "pipeline_complete":
        return None
    return f"  {kind}: {item.content}"
