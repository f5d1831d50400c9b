"""The effective tag: the one rule that says what a placement is tagged for a task, and where that came from.

The rule is written once, as data (`RULE`): an ordered list of steps, each a condition on a few named inputs
and the input that gives the label. The first step whose condition holds wins; none holding means unknown.
`decide` evaluates it in Python; `annotate_effective` turns the same steps into SQL CASE expressions over a
Placement queryset. Everything that shows, filters, counts or exports tags reads one of the two, and
tests/reviews/test_effective_rule.py checks that they agree on every combination of inputs.

The inputs of a (placement, task):
- `fix_label`: the label the latest manual fix of (advertiser, asset, task) puts in effect (a revert or a carried fix
  is a fix too; a withdrawal, the undo of a fix made where none was in effect, puts none: ManualFix.label_in_effect);
- `scrape_color`: for color, the color the scrape configured on the listing;
- `model_status`, `model_label`: the active model's result for the asset (None without one);
- `placement_status`: whether the image could be fetched;
- `type_label`: for color, the effective image type (a placeholder has no color: DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from django.db.models import (
    Case,
    CharField,
    F,
    FilteredRelation,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, Lower, NullIf, Trim
from django.db.models.lookups import Exact

from catalog.models import TASK_LABELS, Placement, Task
from classifier.models import Classification

from .models import ManualFix, label_in_effect, on_side

PLACEHOLDER = "Placeholder"
PLACEMENT_ADVERTISER = "listing__sitemap__advertiser_id"
# How a scrape may spell each color (any case; "gray" too), to the vocabulary's spelling.
COLOR_NAMES = {color.lower(): color for color in TASK_LABELS[Task.COLOR]} | {"gray": "Grey"}
OK = Classification.Status.OK.value
FAILED = Classification.Status.FAILED.value


class Source:
    FIX = "fix"
    SCRAPE = "scrape"
    MODEL = "model"
    RULE = "rule"  # a placeholder's color: none
    FAILED = "failed"
    UNKNOWN = "unknown"

    ALL = (FIX, SCRAPE, MODEL, RULE, FAILED, UNKNOWN)


@dataclass(frozen=True)
class Inputs:
    """What the rule looks at for one (placement, task)."""

    fix_label: str | None = None
    scrape_color: str | None = None
    model_status: str | None = None
    model_label: str | None = None
    placement_status: str = Placement.Status.OK
    type_label: str | None = None


INPUT_NAMES = tuple(item.name for item in fields(Inputs))


# The conditions: each answers in Python (for one Inputs) and in SQL (a Q over annotations named by `column`).
@dataclass(frozen=True)
class IsSet:
    name: str

    def holds(self, inputs: Inputs) -> bool:
        return getattr(inputs, self.name) is not None

    def q(self, column: ColumnNames) -> Q:
        return Q(**{f"{column(self.name)}__isnull": False})


@dataclass(frozen=True)
class Equals:
    name: str
    value: str

    def holds(self, inputs: Inputs) -> bool:
        return getattr(inputs, self.name) == self.value

    def q(self, column: ColumnNames) -> Q:
        # NULL = 'x' is not true in SQL, and None == 'x' is False in Python: the two agree on missing inputs.
        return Q(**{column(self.name): self.value})


@dataclass(frozen=True)
class Either:
    first: IsSet | Equals
    second: IsSet | Equals

    def holds(self, inputs: Inputs) -> bool:
        return self.first.holds(inputs) or self.second.holds(inputs)

    def q(self, column: ColumnNames) -> Q:
        return self.first.q(column) | self.second.q(column)


Condition = IsSet | Equals | Either


@dataclass(frozen=True)
class Step:
    source: str
    when: Condition
    label: str | None  # the input that gives the label; None: no label (none, failed)
    tasks: frozenset[str] | None = None  # None: every task

    def applies_to(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks


COLOR_ONLY = frozenset({Task.COLOR.value})

RULE: tuple[Step, ...] = (
    Step(Source.RULE, Equals("type_label", PLACEHOLDER), None, COLOR_ONLY),
    Step(Source.FIX, IsSet("fix_label"), "fix_label"),
    Step(Source.SCRAPE, IsSet("scrape_color"), "scrape_color", COLOR_ONLY),
    Step(Source.MODEL, Equals("model_status", OK), "model_label"),
    Step(Source.FAILED, Either(Equals("model_status", FAILED), Equals("placement_status", FAILED)), None),
)
OTHERWISE = Source.UNKNOWN


def steps_of(task: str) -> list[Step]:
    return [step for step in RULE if step.applies_to(task)]


def decide(task: str, inputs: Inputs) -> tuple[str | None, str]:
    """(label, source) of one placement for the task, by the rule."""
    for step in steps_of(task):
        if step.when.holds(inputs):
            return (getattr(inputs, step.label) if step.label else None), step.source
    return None, OTHERWISE


def tasks_needed(tasks: Iterable[str]) -> list[str]:
    """The tasks whose inputs the rule needs to answer these: color needs the image type."""
    wanted = set(tasks)
    if Task.COLOR in wanted:
        wanted.add(Task.IMAGE_TYPE)
    return [task for task in Task.values if task in wanted]


def scrape_color_of(attributes: Mapping[str, object]) -> str | None:
    """The listing's configured color, if it names one of the 12 colors (case-insensitive; 'gray' too)."""
    value = attributes.get("color") or attributes.get("colour")
    return COLOR_NAMES.get(str(value).strip().lower()) if value else None


# SQL -------------------------------------------------------------------------------------------------------


def latest_fix(
    task: str, *, sources: tuple[str, ...] = (), advertiser_ref: str = PLACEMENT_ADVERTISER
) -> QuerySet[ManualFix]:
    """Fix rows of the outer row's (advertiser, asset) for the task, latest first (slice [:1] for the one in effect,
    and read its label_in_effect: a withdrawal puts none); `sources` keeps only the rows of one side of a conflict
    (reviews.models.on_side)."""
    fixes = ManualFix.objects.filter(advertiser_id=OuterRef(advertiser_ref), asset_id=OuterRef("asset_id"), task=task)
    if sources:
        fixes = fixes.filter(on_side(sources))
    return fixes.order_by("-created_at", "-id")


def latest_fix_label(
    task: str, *, sources: tuple[str, ...] = (), advertiser_ref: str = PLACEMENT_ADVERTISER
) -> Subquery:
    """The label the latest fix row of the outer row's scope puts in effect (NULL: none, or a withdrawal)."""
    latest = latest_fix(task, sources=sources, advertiser_ref=advertiser_ref)
    return Subquery(latest.values(label=label_in_effect())[:1], output_field=CharField())


def scrape_color() -> Case:
    """The color the scrape configured on the outer placement's listing, as `scrape_color_of` reads it."""
    text = CharField()
    configured = NullIf(KeyTextTransform("color", "listing__attributes"), Value(""), output_field=text)
    raw = Lower(Trim(Coalesce(configured, KeyTextTransform("colour", "listing__attributes"), output_field=text)))
    return Case(
        *(When(Exact(raw, Value(name)), then=Value(color)) for name, color in COLOR_NAMES.items()),
        default=Value(None),
        output_field=CharField(),
    )


class ColumnNames:
    """Annotation names of one task's inputs and answers: `<task>_<input>`, `<task>_label`, `<task>_source`."""

    def __init__(self, task: str) -> None:
        self.task = task

    def __call__(self, name: str) -> str:
        return f"{self.task}_{name}"

    @property
    def label(self) -> str:
        return f"{self.task}_label"

    @property
    def source(self) -> str:
        return f"{self.task}_source"

    @property
    def result(self) -> str:
        return f"{self.task}_result"


def label_expression(task: str) -> Case:
    column = ColumnNames(task)
    whens = [
        When(step.when.q(column), then=F(column(step.label)) if step.label else Value(None)) for step in steps_of(task)
    ]
    return Case(*whens, default=Value(None), output_field=CharField())


def source_expression(task: str) -> Case:
    column = ColumnNames(task)
    whens = [When(step.when.q(column), then=Value(step.source)) for step in steps_of(task)]
    return Case(*whens, default=Value(OTHERWISE), output_field=CharField())


def scoped_versions(heads: Mapping[str, int], task: str) -> dict[int, int]:
    """{advertiser id: version} of the task's scoped heads in `heads` (reviews.expressions.ActiveHeads), if any."""
    return dict(getattr(heads, "scoped", {}).get(task, {}))


def annotate_inputs(
    queryset: QuerySet[Placement], task: str, heads: Mapping[str, int], *, advertiser_ref: str = PLACEMENT_ADVERTISER
) -> QuerySet[Placement]:
    """Annotates a Placement queryset with the task's inputs (and the answering result's model version, confidence,
    margin and crop source).

    The model's result is one LEFT JOIN on its unique key (asset, model version, task), not one correlated subquery
    per field and row. Where advertisers have a scoped head for the task (`heads.scoped`), a second join reads the
    scoped head's result for the placement's advertiser, and it answers wherever it has a result: the active model
    answers the rest (no scoped head, or an image it has not classified yet). Without scoped heads the query is the
    one-join query it always was. For color, the image type's answer must be annotated first (`annotate_effective`
    does it in that order).
    """
    column = ColumnNames(task)
    relation = "asset__classifications"
    queryset = queryset.annotate(
        **{
            column.result: FilteredRelation(
                relation,
                condition=Q(**{f"{relation}__model_version_id": heads.get(task), f"{relation}__task": task}),
            )
        }
    )
    none = Value(None, output_field=CharField())
    fields = {
        "model_status": "status",
        "model_label": "label",
        "model_confidence": "confidence",
        "model_margin": "margin",
        "model_version": "model_version_id",
        "crop_source": "crop_source",
    }
    answer: dict[str, Any] = {name: F(f"{column.result}__{field}") for name, field in fields.items()}
    scoped = scoped_versions(heads, task)
    if scoped:
        # The scoped head of the placement's advertiser, as a value of the row: NULL where it has none.
        scoped_result = column("scoped_result")
        queryset = queryset.annotate(
            **{
                column("scoped_version"): Case(
                    *(When(**{advertiser_ref: by}, then=Value(version)) for by, version in scoped.items()),
                    default=Value(None),
                    output_field=IntegerField(),
                )
            }
        ).annotate(
            **{
                scoped_result: FilteredRelation(
                    relation,
                    # The IN list lets the database read the scoped versions' rows only (an index range), where the
                    # CASE alone would have it hash every result of the task.
                    condition=Q(
                        **{
                            f"{relation}__model_version_id": F(column("scoped_version")),
                            f"{relation}__model_version_id__in": sorted(set(scoped.values())),
                            f"{relation}__task": task,
                        }
                    ),
                )
            }
        )
        has_scoped = Q(**{f"{scoped_result}__id__isnull": False})
        answer = {
            name: Case(When(has_scoped, then=F(f"{scoped_result}__{fields[name]}")), default=expression)
            for name, expression in answer.items()
        }
    return queryset.annotate(
        **{
            column("fix_label"): latest_fix_label(task, advertiser_ref=advertiser_ref),
            column("scrape_color"): scrape_color() if task == Task.COLOR else none,
            **{column(name): expression for name, expression in answer.items()},
            column("placement_status"): F("status"),
            column("type_label"): F(ColumnNames(Task.IMAGE_TYPE).label) if task == Task.COLOR else none,
        }
    )


def annotate_effective(
    queryset: QuerySet[Placement],
    tasks: Iterable[str],
    heads: Mapping[str, int],
    *,
    advertiser_ref: str = PLACEMENT_ADVERTISER,
) -> QuerySet[Placement]:
    """Annotates `<task>_label` and `<task>_source` (and the task's inputs) for each task, by the rule.

    `heads` maps task -> active model version (reviews.expressions.active_heads()).
    """
    for task in tasks_needed(tasks):
        column = ColumnNames(task)
        queryset = annotate_inputs(queryset, task, heads, advertiser_ref=advertiser_ref)
        queryset = queryset.annotate(**{column.label: label_expression(task), column.source: source_expression(task)})
    return queryset
