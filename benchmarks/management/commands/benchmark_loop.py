"""The loop's figures: a drifted advertiser, its fixes, then per task export, candidates, shadow pass and promotion,
timed."""

import json
import os
import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connection
from django.test.utils import override_settings

from benchmarks.loads import starter_models_ensure
from catalog.models import Advertiser, Placement, Run
from classifier.models import Classification, ModelVersion
from classifier.services.promotion import model_promote, promotion_regressions
from classifier.services.shadow import shadow_run, shadow_start
from classifier.services.training import training_run, training_start
from config.commands import BaseCommand
from reviews.exports.services import export_build, export_create, export_freeze, export_mark_used, training_manifest
from reviews.health import review_queue
from reviews.loop_scenario import DRIFTED, TASK, TASKS, LoopScenario, Shop, best_candidate
from reviews.models import DatasetExport

# --kinds: two dealers of mostly cars and one of mostly other vehicles, and how many of each one's images are labelled
# per 100 of --fixes (car-heavy labels: the share of other vehicles in the training data shrinks, as the old team saw).
KIND_SHOPS = {
    "cars-north": ("ordinary", 0.4, 100),
    "cars-south": ("ordinary", 0.4, 100),
    "fleet-motors": ("non_car", 0.2, 10),
}


def _tasks(value: str) -> tuple[str, ...]:
    """--tasks: a comma-separated list of TASKS, each once, in the order given."""
    tasks = tuple(dict.fromkeys(task.strip() for task in value.split(",") if task.strip()))
    unknown = [task for task in tasks if task not in TASKS]
    if unknown or not tasks:
        raise CommandError(f"--tasks {value!r}: a comma-separated list of {', '.join(TASKS)}")
    return tasks


def _frozen_export(task: str, **options: Any) -> tuple[DatasetExport, dict[str, Any]]:
    """A task's export (export_create's `options`), built, frozen with its likely label mistakes kept, and marked
    used, with its training manifest."""
    export = export_create(task=task, enqueue=False, **options)
    export_build(export_id=export.pk)
    export.refresh_from_db()
    export = export_freeze(export=export, keep_pending=True)
    manifest = training_manifest(export=export)
    export_mark_used(export=export)
    return export, manifest


def _first_runs_drift(scenario: LoopScenario) -> dict[str, str | None]:
    """Per shop: the drift flag's message on its first Run, or None (the first shop has nothing to compare with)."""
    runs = Run.objects.in_bulk([shop.runs[0] for shop in scenario.shops.values()])
    return {
        slug: next((flag["message"] for flag in runs[shop.runs[0]].health_flags if flag.get("code") == "drift"), None)
        for slug, shop in scenario.shops.items()
    }


class Command(BaseCommand):
    help = (
        "Runs the loop's reference scenario on the starter models and prints, per task (--tasks), the time of each "
        "stage (export, candidates, the shadow pass over every live asset, promotion), the drifted advertiser's "
        "accuracy before and after, each other advertiser's (one of them, by default, with no label), and what the "
        "guard on confident model tags found (a likely regression is printed, accepted and recorded). "
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
        parser.add_argument(
            "--tasks",
            default=",".join(TASKS),
            help=f"The tasks labelled and looped, comma-separated (default {','.join(TASKS)}; --compare-picks: "
            f"{TASK} only).",
        )
        parser.add_argument("--json", action="store_true", dest="as_json")
        parser.add_argument(
            "--compare-picks",
            action="store_true",
            help=(
                "Instead of the loop: label --fixes images of the drifted advertiser picked by the review queue, "
                "export and train (no shadow pass, no promotion), undo the labels, do the same with --fixes picked at "
                "random (--seed), and print each pick's lift: the best candidate's accuracy minus the active model's "
                "on the drifted images neither pick labelled."
            ),
        )
        parser.add_argument("--seed", type=int, default=1, help="The random pick's seed (--compare-picks, --kinds).")
        parser.add_argument(
            "--kinds",
            action="store_true",
            help=(
                "Instead of the loop: the vehicle kinds' slices. Three advertisers share --assets: two dealers of "
                "mostly cars, one (fleet-motors) of mostly motorcycles, buses and RVs, and heavy trucks. After their "
                "first Runs, car-heavy labels (--fixes of each car dealer, a tenth as many of fleet-motors, picked at "
                "random with --seed), one export per task, and candidates trained on it twice: kinds rebalanced "
                "(TRAINING_BALANCE_KINDS on) and not. Prints each kind's accuracy on the images no one labelled, with "
                "the active model and with each retrain's best candidate (nothing is promoted)."
            ),
        )
        parser.add_argument(
            "--scope",
            choices=("global", "advertiser"),
            default="global",
            help="global: refit the head everyone reads; advertiser: refit a head scoped to the drifted advertiser "
            "(its labels only, the global head as its prior), which answers for its placements alone.",
        )

    def handle(self, *args: object, **options: Any) -> None:
        say = self.stderr.write
        tasks = _tasks(options["tasks"])
        for task in tasks:
            starter_models_ensure(say=say, task=task)
        if options["kinds"]:
            self._kinds(tasks, options)
            return
        others = max(1, options["others"])
        each = max(1, (options["assets"] - options["drifted"]) // others)
        sizes = {DRIFTED: options["drifted"]} | {f"shop-{k}": each for k in range(others)}
        scenario = LoopScenario(sizes=sizes, tasks=tasks)
        with scenario.timed("generate images"):
            scenario.generate()
        say(f"generated {sum(sizes.values()):,} images in {scenario.timings['generate images']} s")
        if options["compare_picks"]:
            scenario.tasks = (TASK,)
            self._compare_picks(scenario, options)
            return
        with scenario.serving():
            with scenario.timed("first Runs (fetch and tag)"):
                scenario.run_all(progress=say)
            drift = _first_runs_drift(scenario)
            unlabelled = [f"shop-{k}" for k in range(max(0, others - options["unlabelled"]), others)]
            with scenario.timed("human labels"):
                scenario.label(
                    fixes={DRIFTED: options["fixes"]}
                    | {slug: options["other_fixes"] for slug in sizes if slug != DRIFTED and slug not in unlabelled}
                )
            # After the labels (they change no model result): before and after on the same held-out images.
            before = {task: scenario.accuracy(task) for task in tasks}
            loops = {task: self._loop(scenario, task, options) for task in tasks}
            after = {task: scenario.accuracy(task) for task in tasks}
        figures: dict[str, Any] = {
            "load_average": [round(value, 2) for value in os.getloadavg()],
            "database": connection.vendor,
            "assets": sum(sizes.values()),
            "tasks": list(tasks),
            "timings_s": {stage: seconds for stage, seconds in scenario.timings.items() if ": " not in stage},
            "loop_s": round(sum(loop["loop_s"] for loop in loops.values()), 2),
            "unlabelled": unlabelled,
            "scope": options["scope"],
            "first_run_drift": drift,
        }
        for task, loop in loops.items():
            drops = {slug: round(before[task][slug] - after[task][slug], 4) for slug in sizes if slug != DRIFTED}
            loop["drifted"] |= {
                "held_out_before": round(before[task][DRIFTED], 4),
                "held_out_after": round(after[task][DRIFTED], 4),
            }
            loop["others_held_out"] = {
                slug: [round(before[task][slug], 4), round(after[task][slug], 4)] for slug in drops
            }
            loop["largest_drop_among_others"] = max(drops.values()) if drops else 0.0
            figures[task] = loop
        if options["as_json"]:
            self.stdout.write(json.dumps(figures))
            return
        self._table(figures)

    def _loop(self, scenario: LoopScenario, task: str, options: dict[str, Any]) -> dict[str, Any]:
        """Export, candidates, the shadow pass and the promotion of the best candidate for one task, timed (stages
        named "<task>: <stage>"); the guard's verdict is printed, and a refusal overridden and recorded."""
        say = self.stderr.write
        stages = ("export", f"{options['candidates']} candidates", "shadow pass", "promotion")
        with scenario.timed(f"{task}: export"):
            export, manifest = _frozen_export(task)
        say(f"{task} export {export.pk}: {export.counts} in {scenario.timings[f'{task}: export']} s")
        scope = Advertiser.objects.get(slug=DRIFTED) if options["scope"] == "advertiser" else None
        with scenario.timed(f"{task}: {stages[1]}"):
            job = training_start(
                task=task,
                export_id=export.pk,
                manifest=manifest,
                candidates=options["candidates"],
                advertiser=scope,
                enqueue=False,
            )
            job = training_run(job_id=job.pk)
        if job.status != "succeeded":
            raise SystemExit(f"{task} training failed: {job.error}")
        candidate = best_candidate(job)
        with scenario.timed(f"{task}: shadow pass"):
            shadow = shadow_run(pass_id=shadow_start(version=candidate, enqueue=False).pk)
        seconds = scenario.timings[f"{task}: shadow pass"]
        say(f"{task} shadow pass: {shadow.done:,} of {shadow.total:,} assets in {seconds} s")
        results_before = Classification.objects.count()
        regressions = promotion_regressions(version=candidate, tasks=[task])
        for regression in regressions:
            say(f"the {task} promotion guard finds a likely regression: {regression.describe()} (accepted, recorded)")
        with scenario.timed(f"{task}: promotion"):
            # A benchmark measures the promotion: the guard's verdict is printed, and an override recorded.
            model_promote(version=candidate, tasks=[task], override_regressions=True, by="manage.py benchmark_loop")
        best = next(c for c in job.result["candidates"] if c["model_version"] == job.result["best"])
        timings = {stage: scenario.timings[f"{task}: {stage}"] for stage in stages}
        return {
            "shadow_pass_assets": shadow.total,
            "export": {"id": export.pk, "counts": export.counts, "excluded": export.excluded},
            "timings_s": timings,
            "loop_s": round(sum(timings.values()), 2),
            "promotion_new_results": Classification.objects.count() - results_before,
            "drifted": {
                "test_split_before": job.result["baseline"]["local_accuracy"].get(DRIFTED),
                "test_split_after": best["local_accuracy"].get(DRIFTED),
            },
            "best_confident_flips": best.get("confident_flips", {}),
            "promotion_regressions": [regression.describe() for regression in regressions],
            "best": {"model_version": candidate.pk, "params": best["params"]},
        }

    def _kinds(self, tasks: tuple[str, ...], options: dict[str, Any]) -> None:
        """Each vehicle kind's held-out accuracy before a retrain on car-heavy labels and after it, with the kinds
        rebalanced in the fit and without, per task (issue 20's "Show it")."""
        say = self.stderr.write
        sizes = {slug: max(1, round(options["assets"] * share)) for slug, (_, share, _) in KIND_SHOPS.items()}
        styles = {slug: style for slug, (style, _, _) in KIND_SHOPS.items()}
        scenario = LoopScenario(sizes=sizes, styles=styles, tasks=tasks)
        with scenario.timed("generate images"):
            scenario.generate()
        say(f"generated {sum(sizes.values()):,} images in {scenario.timings['generate images']} s")
        rows: dict[str, Any] = {}
        with scenario.serving():
            with scenario.timed("first Runs (fetch and tag)"):
                scenario.run_all(progress=say)
            with scenario.timed("human labels"):
                fixes = {slug: options["fixes"] * per_100 // 100 for slug, (_, _, per_100) in KIND_SHOPS.items()}
                scenario.label(fixes=fixes, pick="random", seed=options["seed"])
            labelled_kinds: dict[str, int] = {}
            for shop in scenario.shops.values():
                for placement in scenario.placements(shop):
                    if placement.asset_id in scenario.labelled and shop.vehicle_kind_by_url.get(placement.url):
                        kind = shop.vehicle_kind_by_url[placement.url]
                        labelled_kinds[kind] = labelled_kinds.get(kind, 0) + 1
            for task in tasks:
                with scenario.timed(f"{task}: export"):
                    export, manifest = _frozen_export(task)
                active = ModelVersion.objects.get(heads__task=task, heads__is_active=True)
                before = scenario.kind_accuracy(active, task)
                after = {}
                for balance in (False, True):
                    name = "rebalanced" if balance else "not rebalanced"
                    with (
                        scenario.timed(f"{task}: candidates, {name}"),
                        override_settings(TRAINING_BALANCE_KINDS=balance),
                    ):
                        job = training_start(
                            task=task, export_id=export.pk, manifest=manifest, candidates=options["candidates"],
                            enqueue=False,
                        )  # fmt: skip
                        job = training_run(job_id=job.pk)
                    if job.status != "succeeded":
                        raise SystemExit(f"{task} training ({name}) failed: {job.error}")
                    after[name] = scenario.kind_accuracy(best_candidate(job), task)
                    say(f"{task}, {name}: best candidate {job.result['best']} of job {job.pk}")
                rows[task] = {
                    kind: {
                        "images": count,
                        "before": round(accuracy, 4),
                        **{name: round(result[kind][1], 4) for name, result in after.items()},
                    }
                    for kind, (count, accuracy) in before.items()
                }
        figures = {
            "load_average": [round(value, 2) for value in os.getloadavg()],
            "database": connection.vendor,
            "assets": sum(sizes.values()),
            "labels": fixes,
            "labelled_kinds": labelled_kinds,
            "timings_s": scenario.timings,
            "tasks": list(tasks),
            "kinds": rows,
            "largest_loss_rebalanced": {
                task: round(max(0.0, *(row["before"] - row["rebalanced"] for row in kinds.values())), 4)
                for task, kinds in rows.items()
            },
        }
        if options["as_json"]:
            self.stdout.write(json.dumps(figures))
            return
        write = self.stdout.write
        load = ", ".join(str(value) for value in figures["load_average"])
        shops = ", ".join(f"{slug} {count}" for slug, count in sizes.items())
        write(
            f"vehicle kinds on {figures['assets']:,} live images ({shops}; {figures['database']}), load average {load}"
        )
        write(
            "labels: "
            + ", ".join(f"{slug} {count}" for slug, count in fixes.items())
            + "; labelled images by kind: "
            + ", ".join(f"{kind} {count}" for kind, count in sorted(labelled_kinds.items(), key=lambda kv: -kv[1]))
        )
        for task, kinds in rows.items():
            write(f"{task} accuracy per vehicle kind, on the images no one labelled")
            write(
                f"  {'kind':<11} {'images':>6} {'before':>7} {'not rebalanced':>15} {'change':>7} "
                f"{'rebalanced':>11} {'change':>7}"
            )
            for kind, row in kinds.items():
                plain, balanced = row["not rebalanced"], row["rebalanced"]
                write(
                    f"  {kind:<11} {row['images']:>6} {row['before']:>7.3f} {plain:>15.3f} "
                    f"{plain - row['before']:>+7.3f} {balanced:>11.3f} {balanced - row['before']:>+7.3f}"
                )
            loss = figures["largest_loss_rebalanced"][task] * 100
            write(f"  rebalanced: the largest loss of a kind is {loss:.1f} points (target: at most 1)")
        write(f"{'stage':<40} {'seconds':>9}")
        for stage, seconds in scenario.timings.items():
            write(f"{stage:<40} {seconds:>9}")
        write(f"({time.strftime('%Y-%m-%d %H:%M')})")

    def _compare_picks(self, scenario: LoopScenario, options: dict[str, Any]) -> None:
        """The lift per --fixes labels of the drifted advertiser, picked by the queue and at random, on the same
        held-out images (those neither pick labelled), with the other advertisers' labels the same for both."""
        say = self.stderr.write
        with scenario.serving():
            scenario.run_all(progress=say)
        drifted = scenario.shops[DRIFTED]
        others = [slug for slug in scenario.shops if slug != DRIFTED]
        others = others[: max(0, len(others) - options["unlabelled"])]
        scenario.label(fixes=dict.fromkeys(others, options["other_fixes"]))
        scenario.label_sets.clear()  # the other advertisers' labels stay for both picks
        picks = {
            "queue": scenario.pick(drifted, options["fixes"], pick="queue"),
            "random": scenario.pick(drifted, options["fixes"], pick="random", seed=options["seed"]),
        }
        chosen = {placement.asset_id for placed in picks.values() for placement in placed}
        held_out = [placement for placement in scenario.placements(drifted) if placement.asset_id not in chosen]
        active = ModelVersion.objects.get(heads__task=TASK, heads__is_active=True)
        before = scenario.accuracy_of(active, held_out, drifted)
        advertiser_id = drifted.sitemap.advertiser_id if drifted.sitemap else 0
        asked = {item.asset_id for item in review_queue(user_advertiser_ids=[advertiser_id], task=TASK, limit=100_000)}
        rows = []
        for name, placements in picks.items():
            with scenario.timed(f"{name}: label, export, {options['candidates']} candidates"):
                rows.append(self._one_pick(scenario, drifted, name, placements, held_out, before, asked, options))
            scenario.unlabel()
        figures = {
            "load_average": [round(value, 2) for value in os.getloadavg()],
            "database": connection.vendor,
            "assets": sum(scenario.sizes.values()),
            "drifted": len(drifted.images),
            "labels": options["fixes"],
            "held_out": len(held_out),
            "before": round(before, 4),
            "picks": rows,
            "timings_s": scenario.timings,
        }
        if options["as_json"]:
            self.stdout.write(json.dumps(figures))
            return
        write = self.stdout.write
        load = ", ".join(str(value) for value in figures["load_average"])
        write(
            f"{figures['labels']} labels of {DRIFTED} ({figures['drifted']} images, {figures['assets']:,} in all, "
            f"{figures['database']}, load average {load}); held out: the {figures['held_out']} images neither pick "
            f"labelled, {before:.3f} right before"
        )
        write(f"{'pick':<8} {'asked':>6} {'wrong':>6} {'after':>6} {'lift':>7} {'lift/100':>9}")
        for row in rows:
            write(
                f"{row['pick']:<8} {row['asked']:>6} {row['model_wrong']:>6} {row['after']:>6.3f} "
                f"{row['lift']:>+7.3f} {row['lift_per_100']:>+9.3f}"
            )
        write("asked: of the labels, questions the queue had; wrong: labels that overturned the active model")

    def _one_pick(
        self,
        scenario: LoopScenario,
        drifted: Shop,
        name: str,
        placements: list[Placement],
        held_out: list[Placement],
        before: float,
        asked: set[int],
        options: dict[str, Any],
    ) -> dict[str, Any]:
        """Labels these placements, exports and trains, and measures the best candidate on the held-out images."""
        active = ModelVersion.objects.get(heads__task=TASK, heads__is_active=True)
        tags = dict(
            Classification.objects.filter(
                asset_id__in=[p.asset_id for p in placements], model_version=active, task=TASK
            ).values_list("asset_id", "label")
        )
        wrong = sum(tags.get(p.asset_id or 0) != drifted.truth_by_url[p.url] for p in placements)
        scenario.label_placements(drifted, placements)
        # Every human label in effect (the other pick's were undone), not only those since the other pick's export.
        export, manifest = _frozen_export(TASK, since_last_training=False)
        job = training_start(
            task=TASK, export_id=export.pk, manifest=manifest, candidates=options["candidates"], enqueue=False
        )
        job = training_run(job_id=job.pk)
        if job.status != "succeeded":
            raise SystemExit(f"training failed ({name} pick): {job.error}")
        after = scenario.accuracy_of(best_candidate(job), held_out, drifted)
        lift = after - before
        self.stderr.write(f"{name} pick: export {export.pk} {export.counts}, best candidate {job.result['best']}")
        return {
            "pick": name,
            "asked": sum(p.asset_id in asked for p in placements),
            "model_wrong": wrong,
            "after": round(after, 4),
            "lift": round(lift, 4),
            "lift_per_100": round(lift * 100 / max(1, len(placements)), 4),
        }

    def _table(self, figures: dict[str, Any]) -> None:
        write = self.stdout.write
        load = ", ".join(str(value) for value in figures["load_average"])
        scope = "a head scoped to " + DRIFTED if figures["scope"] == "advertiser" else "the global head"
        write(f"the loop on {figures['assets']:,} live images ({figures['database']}), load average {load}; {scope}")
        write(f"{'stage':<28} {'seconds':>9}")
        for stage, seconds in figures["timings_s"].items():
            write(f"{stage:<28} {seconds:>9}")
        for task in figures["tasks"]:
            for stage, seconds in figures[task]["timings_s"].items():
                write(f"{task + ': ' + stage:<28} {seconds:>9}")
        write(f"{'the loop (export to promotion)':<28} {figures['loop_s']:>9}  ({', '.join(figures['tasks'])})")
        for task in figures["tasks"]:
            self._task_table(task, figures[task], figures["unlabelled"])
        drift = figures["first_run_drift"]
        calm = [slug for slug, message in drift.items() if slug != DRIFTED and message is None]
        write(f"drift flag on the first Run of {DRIFTED}: {drift.get(DRIFTED) or 'none'}")
        write(f"drift flag on the others' first Runs: {len(drift) - 1 - len(calm)} of {len(drift) - 1}")
        write(f"({time.strftime('%Y-%m-%d %H:%M')})")

    def _task_table(self, task: str, loop: dict[str, Any], unlabelled: list[str]) -> None:
        write = self.stdout.write
        write(
            f"{task}: promotion classified {loop['promotion_new_results']} images (the shadow pass had done them all)"
        )
        drifted = loop["drifted"]
        test_before, test_after = drifted["test_split_before"], drifted["test_split_after"]
        write(f"{task + ' accuracy':<34} {'before':>6} {'after':>6} {'change':>7}")
        write(
            f"{DRIFTED + ' (held out)':<34} {drifted['held_out_before']:>6.3f} {drifted['held_out_after']:>6.3f} "
            f"{drifted['held_out_after'] - drifted['held_out_before']:>+7.3f}"
        )
        if test_before is not None and test_after is not None:
            change = test_after - test_before
            write(f"{DRIFTED + ' (test split)':<34} {test_before:>6.3f} {test_after:>6.3f} {change:>+7.3f}")
        for slug, (before, after) in loop["others_held_out"].items():
            no_label = ", no label" if slug in unlabelled else ""
            write(f"{slug + ' (held out' + no_label + ')':<34} {before:>6.3f} {after:>6.3f} {after - before:>+7.3f}")
        write(f"largest drop among the others: {loop['largest_drop_among_others'] * 100:.1f} points")
        flips = loop["best_confident_flips"]
        write(
            "best candidate's flips of confident tags (training guard): "
            + (", ".join(f"{slug} {v['flipped']} of {v['confident']}" for slug, v in flips.items()) or "none sampled")
        )
        write(f"promotion guard: {'; '.join(loop['promotion_regressions']) or 'no likely regression'}")
        write(f"best candidate {loop['best']['model_version']}: {loop['best']['params']}")
