"""The model registry: register an ONNX file with its contract, and switch which version is active."""

from __future__ import annotations

import dataclasses
import hashlib
import re

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from catalog.models import Task
from classifier.contract import (
    ClassifierContract,
    ContractError,
    check_contract_against_model,
    contract_to_json,
    parse_contract,
)
from classifier.models import ModelHead, ModelVersion
from classifier.signals import heads_switched
from core.errors import ApplicationError


class RegistryError(ApplicationError):
    """A model cannot be registered or activated; the message says why in one line."""

    code = "model_refused"


def model_register(
    *,
    data: bytes,
    contract: dict[str, object],
    activate: bool = False,
    metrics: dict[str, object] | None = None,
    notes: str = "",
) -> ModelVersion:
    """Registers an ONNX model after checking its contract against the graph; idempotent by file SHA-256.

    Any ONNX file that matches its contract runs without code changes. Raises RegistryError with a
    one-line reason when the contract is malformed, does not match the graph, or names an unknown task, and when
    the same file is already registered under another contract (another name, say): a version is its file, whose
    results are cached under that version, so the same bytes cannot be a second model.
    """
    try:
        parsed = parse_contract(contract)
        check_contract_against_model(parsed, data)
    except ContractError as exc:
        raise RegistryError(str(exc)) from exc
    if isinstance(parsed, ClassifierContract):
        unknown = [head.task for head in parsed.heads if head.task not in Task.values]
        if unknown:
            raise RegistryError(f"unknown task {unknown[0]!r}: tasks are {', '.join(Task.values)}")
    sha256 = hashlib.sha256(data).hexdigest()
    version = ModelVersion.objects.filter(sha256=sha256).first()
    if version is None:
        version = _create(parsed=parsed, data=data, sha256=sha256, metrics=metrics or {}, notes=notes)
    elif (registered := parse_contract(version.contract)) != parsed:
        other = "name" if dataclasses.replace(registered, name=parsed.name) == parsed else "contract"
        raise RegistryError(
            f"the same ONNX file (SHA-256 {sha256[:12]}) is already registered as version {version.pk} "
            f'"{version.name}" with another {other}: use that version (activate_model {version.pk})'
        )
    if activate:
        model_activate(version=version)
    return version


@transaction.atomic
def _create(*, parsed: object, data: bytes, sha256: str, metrics: dict[str, object], notes: str) -> ModelVersion:
    name = parsed.name  # type: ignore[attr-defined]
    slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name)[:60]
    version = ModelVersion(
        name=name,
        kind=parsed.kind,  # type: ignore[attr-defined]
        sha256=sha256,
        contract=contract_to_json(parsed),  # type: ignore[arg-type]
        metrics=metrics,
        notes=notes,
    )
    version.file.save(f"{sha256[:12]}-{slug}.onnx", ContentFile(data), save=False)
    version.save()
    if isinstance(parsed, ClassifierContract):
        ModelHead.objects.bulk_create(
            ModelHead(model_version=version, task=head.task, output=head.output, labels=list(head.labels))
            for head in parsed.heads
        )
    return version


@transaction.atomic
def model_activate(*, version: ModelVersion, tasks: list[str] | None = None) -> ModelVersion:
    """Makes the version the active one for its tasks (or some of them); the one it replaces is retired
    once none of its heads is active any more. The previous results stay in the cache."""
    now = timezone.now()
    switched: list[str] = []  # a detector switch changes crops, not labels, until the Runs classify again
    if version.kind == ModelVersion.Kind.DETECTOR:
        ModelVersion.objects.filter(kind=version.kind, status=ModelVersion.Status.ACTIVE).exclude(pk=version.pk).update(
            status=ModelVersion.Status.RETIRED
        )
    else:
        heads = list(version.heads.all())
        if tasks:
            missing = set(tasks) - {head.task for head in heads}
            if missing:
                raise RegistryError(f"{version.name} has no head for {', '.join(sorted(missing))}")
            heads = [head for head in heads if head.task in tasks]
        replaced = ModelHead.objects.filter(task__in=[h.task for h in heads], is_active=True).exclude(
            model_version=version
        )
        switched = [head.task for head in heads]
        replaced_versions = set(replaced.values_list("model_version_id", flat=True))
        replaced.update(is_active=False)
        ModelHead.objects.filter(pk__in=[h.pk for h in heads]).update(is_active=True)
        ModelVersion.objects.filter(pk__in=replaced_versions).exclude(heads__is_active=True).update(
            status=ModelVersion.Status.RETIRED
        )
    version.status = ModelVersion.Status.ACTIVE
    version.activated_at = now
    version.save(update_fields=["status", "activated_at", "updated_at"])
    if switched:
        heads_switched.send(sender=ModelVersion, tasks=switched)
    return version
