import json
from typing import Any

from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from catalog.models import Advertiser
from classifier.models import ModelVersion, TrainingJob
from classifier.services.training import training_run, training_start
from config.commands import BaseCommand
from reviews.models import DatasetExport


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The --json object: exactly the keys the issue lists (the job's result holds more)."""
    return {
        "export": result["export"],
        "baseline": {"model_version": result["baseline"]["model_version"], "test": result["baseline"]["test"]},
        "candidates": [
            {
                "model_version": candidate["model_version"],
                "params": candidate["params"],
                "test": candidate["test"],
                "local_accuracy": candidate["local_accuracy"],
            }
            for candidate in result["candidates"]
        ],
        "best": result["best"],
    }


class Command(BaseCommand):
    help = (
        "Trains candidate models from a frozen dataset export (refits the active model's head on cached features), "
        "evaluates them beside the active model on the export's test split and registers them as candidates. "
        "Runs here, in this process; the staff screen runs the same job on the training queue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--export", type=int, required=True, help="The DatasetExport id (frozen).")
        parser.add_argument("--candidates", type=int, default=4, help="How many settings to try (1 to 8).")
        parser.add_argument(
            "--advertiser",
            metavar="SLUG",
            help="Train heads scoped to this advertiser: its reviewed labels only, the active head as their prior; "
            "promoted, one answers for its placements only.",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print one JSON object instead of the table."
        )

    def handle(
        self, *args: object, export: int, candidates: int, as_json: bool, advertiser: str | None, **options: Any
    ) -> None:
        from reviews.exports.services import export_mark_used, training_manifest

        dataset = DatasetExport.objects.filter(pk=export).first()
        if dataset is None:
            raise CommandError(f"export {export} does not exist")
        if not dataset.is_frozen:
            raise CommandError(f"export {export} is {dataset.status}: freeze it before training on it")
        scope = None
        if advertiser is not None:
            scope = Advertiser.objects.filter(slug=advertiser).first()
            if scope is None:
                raise CommandError(f"advertiser {advertiser!r} does not exist")
        manifest = training_manifest(export=dataset)
        job = training_start(
            task=dataset.task,
            export_id=dataset.pk,
            manifest=manifest,
            candidates=candidates,
            advertiser=scope,
            enqueue=False,
        )
        with tqdm(total=1000, file=self.stderr, unit="‰", desc="training", leave=False) as bar:

            def progress(fraction: float, stage: str) -> None:
                bar.set_description(stage, refresh=False)
                bar.update(round(fraction * 1000) - bar.n)

            job = training_run(job_id=job.pk, progress=progress)
        if job.status != TrainingJob.Status.SUCCEEDED:
            raise CommandError(f"training job {job.pk} failed: {job.error}")
        export_mark_used(export=dataset)
        if as_json:
            self.stdout.write(json.dumps(_summary(job.result)))
        else:
            self._table(job)

    def _table(self, job: TrainingJob) -> None:
        result = job.result
        names = dict(
            ModelVersion.objects.filter(
                pk__in=[result["baseline"]["model_version"], *(c["model_version"] for c in result["candidates"])]
            ).values_list("pk", "name")
        )
        slugs = sorted(result["baseline"].get("local_accuracy", {}))
        header = f"{'':2}{'model':>6}  {'name':<32} {'settings':<34} {'acc':>6} {'F1':>6}"
        header += "".join(f" {slug[:14]:>14}" for slug in slugs)
        scope = f", scoped to {job.manifest['advertiser']}" if job.advertiser_id else ""
        self.stdout.write(
            f"export {result['export']}, task {job.task}{scope}, test items: {result['baseline']['test']['n']}"
        )
        self.stdout.write(header)
        rows = [("baseline", result["baseline"], "")] + [
            ("candidate", c, "anchor {anchor:g} l2 {l2:g} {class_weight} pseudo {pseudo_label_weight:g}".format(
                **c["params"]))
            for c in result["candidates"]
        ]  # fmt: skip
        for _kind, row, settings in rows:
            pk = row["model_version"]
            mark = "*" if pk == result["best"] else " "
            line = f"{mark} {pk:>6}  {names.get(pk, '?')[:32]:<32} {settings or 'active model':<34}"
            line += f" {row['test']['accuracy']:>6.3f} {row['test']['macro_f1']:>6.3f}"
            line += "".join(f" {row.get('local_accuracy', {}).get(slug, float('nan')):>14.3f}" for slug in slugs)
            self.stdout.write(line)
        self.stdout.write(f"* best on the test split (macro F1): model {result['best']}; candidates are not active.")
