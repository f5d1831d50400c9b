"""The tags in effect for an image outside any listing (a file, an image analysed on the spot): the one rule of
reviews.effective over the active models' answers alone, with no fix and no scrape. So a Placeholder has no color
here either, as on every screen: `classify_file` and `analyze_url` print what this says."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from catalog.models import Task
from classifier.heads import HeadResult

from .effective import FAILED, OK, Inputs, Source, decide


@dataclass(frozen=True)
class ModelTag:
    """A task's tag by the rule: `label` None when the rule gives none (source `rule`: a placeholder's color, or
    `failed`); `result` the model's own answer, when the tag is the model's."""

    label: str | None
    source: str
    result: HeadResult | None = None


def model_tags_in_effect(results: Mapping[str, HeadResult], errors: Mapping[str, str]) -> dict[str, ModelTag]:
    """Every task the models answered or failed on (in Task order), decided by the rule; the image type first, since
    the color's answer depends on it."""
    tags: dict[str, ModelTag] = {}
    type_label: str | None = None
    for task in Task.values:
        if task not in results and task not in errors:
            continue
        result = results.get(task)
        inputs = Inputs(
            model_status=OK if result is not None else FAILED,
            model_label=result.label if result is not None else None,
            type_label=type_label,
        )
        label, source = decide(task, inputs)
        tags[task] = ModelTag(label, source, result if source == Source.MODEL else None)
        if task == Task.IMAGE_TYPE:
            type_label = label
    return tags
