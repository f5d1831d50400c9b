"""The loop's figures: a drifted advertiser, its fixes, export, candidates, shadow pass and promotion, timed."""

import json
import os
import time
from typing import Any

from django.core.management.base import CommandParser
from django.db import connection

from catalog.models import Run
from classifier.benchmarking import starter_models_ensure
from classifier.models import Classification
from classifier.services.promotion import model_promote, promotion_regressions
from classifier.services.shadow import shadow_run, shadow_start
from classifier.services.training import training_run, training_start
from config.commands import BaseCommand
from reviews.exports.services import export_build, export_create, export_freeze, export_mark_used, training_manifest
from reviews.loop_scenario import DRIFTED, TASK, LoopScenario, best_candidate


def _first_runs_drift(scenario: LoopScenario) -> dict[str, str | None]:
    """Per shop: the drift flag's message on its first Run, or None (the first shop has nothing to compare with)."""
    runs = Run.objects.in_bulk([shop.runs[0] for shop in scenario.shops.values()])
    return {
        slug: next((flag["message"] for flag in runs[shop.runs[0]].health_flags if flag.get("code") == "drift"), None)
        for slug, shop in scenario.shops.items()
    }


class Command(BaseCommand):
    help = (
        "Runs the loop's reference scenario on the starter models and prints the time of each stage (export, "
        "candidates, the shadow pass over every live asset, promotion), the drifted advertiser's accuracy before "
        "and after, the largest drop among the other advertisers (one of them, by default, with no label), and "
        "what the guard on confident model tags found (a likely regression is printed, accepted and recorded). "
        "Use a scratch database: it adds advertisers, images and models, and promotes a candidate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--assets", type=int, default=10_000, help="Live images in all (the shadow pass's size).")
        parser.add_argument("--drifted", type=int, default=400, help="Images of the drifted advertiser.")
        parser.add_argument("--others", type=int, default=4, help="Other advertisers (sharing the rest).")
        parser.add_argument(
            "--unlabelled",
            type=int,
            default=1,
            help="How many of the other advertisers get no label (the test split never holds them: the guard does).",
        )
        parser.add_argument("--fixes", type=int, default=200, help="Labels given to the drifted advertiser.")
        parser.add_argument("--other-fixes", type=int, default=100, help="Labels given to each other advertiser.")
        parser.add_argument("--candidates", type=int, default=4)
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args: object, **options: Any) -> None:
        say = self.stderr.write
        starter_models_ensure(say=say, task=TASK)
        others = max(1, options["others"])
        each = max(1, (options["assets"] - options["drifted"]) // others)
        sizes = {DRIFTED: options["drifted"]} | {f"shop-{k}": each for k in range(others)}
        scenario = LoopScenario(sizes=sizes)
        with scenario.timed("generate images"):
            scenario.generate()
        say(f"generated {sum(sizes.values()):,} images in {scenario.timings['generate images']} s")
        with scenario.serving():
            with scenario.timed("first Runs (fetch and tag)"):
                scenario.run_all(progress=say)
            drift = _first_runs_drift(scenario)
            before = scenario.accuracy()
            unlabelled = [f"shop-{k}" for k in range(max(0, others - options["unlabelled"]), others)]
            with scenario.timed("human labels"):
                scenario.label(
                    fixes={DRIFTED: options["fixes"]}
                    | {slug: options["other_fixes"] for slug in sizes if slug != DRIFTED and slug not in unlabelled}
                )
            with scenario.timed("export"):
                export = export_create(task=TASK, enqueue=False)
                export_build(export_id=export.pk)
                export.refresh_from_db()
                export = export_freeze(export=export, keep_pending=True)
                manifest = training_manifest(export=export)
                export_mark_used(export=export)
            say(f"export {export.pk}: {export.counts} in {scenario.timings['export']} s")
            with scenario.timed(f"{options['candidates']} candidates"):
                job = training_start(
                    task=TASK, export_id=export.pk, manifest=manifest, candidates=options["candidates"], enqueue=False
                )
                job = training_run(job_id=job.pk)
            if job.status != "succeeded":
                raise SystemExit(f"training failed: {job.error}")
            candidate = best_candidate(job)
            with scenario.timed("shadow pass"):
                shadow = shadow_run(pass_id=shadow_start(version=candidate, enqueue=False).pk)
            say(f"shadow pass: {shadow.done:,} of {shadow.total:,} assets in {scenario.timings['shadow pass']} s")
            results_before = Classification.objects.count()
            regressions = promotion_regressions(version=candidate)
            for regression in regressions:
                say(f"the promotion guard finds a likely regression: {regression.describe()} (accepted, recorded)")
            with scenario.timed("promotion"):
                # A benchmark measures the promotion: the guard's verdict is printed, and an override recorded.
                model_promote(version=candidate, override_regressions=True, by="manage.py benchmark_loop")
            after = scenario.accuracy()
        best = next(c for c in job.result["candidates"] if c["model_version"] == job.result["best"])
        drops = {slug: round(before[slug] - after[slug], 4) for slug in sizes if slug != DRIFTED}
        loop_stages = ("export", f"{options['candidates']} candidates", "shadow pass", "promotion")
        figures = {
            "load_average": [round(value, 2) for value in os.getloadavg()],
            "database": connection.vendor,
            "assets": sum(sizes.values()),
            "shadow_pass_assets": shadow.total,
            "export": {"id": export.pk, "counts": export.counts, "excluded": export.excluded},
            "timings_s": scenario.timings,
            "loop_s": round(sum(scenario.timings[stage] for stage in loop_stages), 2),
            "promotion_new_results": Classification.objects.count() - results_before,
            "drifted": {
                "held_out_before": round(before[DRIFTED], 4),
                "held_out_after": round(after[DRIFTED], 4),
                "test_split_before": job.result["baseline"]["local_accuracy"].get(DRIFTED),
                "test_split_after": best["local_accuracy"].get(DRIFTED),
            },
            "others_held_out": {slug: [round(before[slug], 4), round(after[slug], 4)] for slug in drops},
            "unlabelled": unlabelled,
            "best_confident_flips": best.get("confident_flips", {}),
            "promotion_regressions": [regression.describe() for regression in regressions],
            "largest_drop_among_others": max(drops.values()) if drops else 0.0,
            "first_run_drift": drift,
            "best": {"model_version": candidate.pk, "params": best["params"]},
        }
        if options["as_json"]:
            self.stdout.write(json.dumps(figures))
            return
        self._table(figures)

    def _table(self, figures: dict[str, Any]) -> None:
        write = self.stdout.write
        load = ", ".join(str(value) for value in figures["load_average"])
        write(f"the loop on {figures['assets']:,} live images ({figures['database']}), load average {load}")
        write(f"{'stage':<28} {'seconds':>9}")
        for stage, seconds in figures["timings_s"].items():
            write(f"{stage:<28} {seconds:>9}")
        write(f"{'the loop (export to promotion)':<28} {figures['loop_s']:>9}")
        write(f"promotion classified {figures['promotion_new_results']} images (the shadow pass had done them all)")
        drifted = figures["drifted"]
        write("image_type accuracy     before  after")
        write(f"{DRIFTED + ' (held out)':<22} {drifted['held_out_before']:>6.3f} {drifted['held_out_after']:>6.3f}")
        write(
            f"{DRIFTED + ' (test split)':<22} {drifted['test_split_before']:>6.3f} {drifted['test_split_after']:>6.3f}"
        )
        for slug, (before, after) in figures["others_held_out"].items():
            unlabelled = ", no label" if slug in figures["unlabelled"] else ""
            write(f"{slug + ' (held out' + unlabelled + ')':<22} {before:>6.3f} {after:>6.3f}")
        write(f"largest drop among the others: {figures['largest_drop_among_others'] * 100:.1f} points")
        flips = figures["best_confident_flips"]
        write(
            "best candidate's flips of confident tags (training guard): "
            + (", ".join(f"{slug} {v['flipped']} of {v['confident']}" for slug, v in flips.items()) or "none sampled")
        )
        write(f"promotion guard: {'; '.join(figures['promotion_regressions']) or 'no likely regression'}")
        drift = figures["first_run_drift"]
        calm = [slug for slug, message in drift.items() if slug != DRIFTED and message is None]
        write(f"drift flag on the first Run of {DRIFTED}: {drift.get(DRIFTED) or 'none'}")
        write(f"drift flag on the others' first Runs: {len(drift) - 1 - len(calm)} of {len(drift) - 1}")
        started = time.strftime("%Y-%m-%d %H:%M")
        write(f"({started}; best candidate {figures['best']['model_version']}: {figures['best']['params']})")
