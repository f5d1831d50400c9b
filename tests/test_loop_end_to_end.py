"""The loop end to end on the real starter models: a drifted advertiser (a photo style the starter models never
saw), 200 human labels, a frozen export, 4 candidates, the shadow pass and the promotion. The drifted advertiser
recovers; nobody else drops by more than a point, including an advertiser nobody labelled (judged by the confident
model tags a candidate would flip). Accuracy is asserted, never time."""

import pytest
from django.core.management import call_command

from catalog.models import Advertiser, Run, Task
from classifier.models import Classification, ModelHead
from classifier.services.promotion import model_promote, model_rollback, promotion_regressions
from classifier.services.scoped import scoped_rollback
from classifier.services.shadow import shadow_run, shadow_start
from classifier.services.training import drop_tolerance, flips_over_tolerance, training_run, training_start
from reviews.exports.services import export_build, export_create, export_freeze, export_mark_used, training_manifest
from reviews.loop_scenario import DRIFTED, TASK, TASKS, LoopScenario, best_candidate
from reviews.models import EffectiveTag

pytestmark = pytest.mark.django_db(transaction=True)
UNLABELLED = "gamma-lot"  # live images, no human label: the test split never holds it


@pytest.fixture
def scenario():
    call_command("register_starter_models")
    scenario = LoopScenario(sizes={DRIFTED: 320, "alpha-cars": 240, "beta-auto": 240, UNLABELLED: 120})
    scenario.generate()
    with scenario.serving():
        scenario.run_all()
        yield scenario


def test_a_drifted_advertiser_recovers_and_nobody_else_pays(scenario):
    labelled = scenario.label(fixes={DRIFTED: 200, "alpha-cars": 160, "beta-auto": 160})
    assert labelled == 520  # fixes and confirmations: one each
    before = scenario.accuracy()  # on the images nobody labelled
    assert before[DRIFTED] < 0.85  # the starter model gets this style wrong
    assert min(before["alpha-cars"], before["beta-auto"], before[UNLABELLED]) > 0.9

    export = export_create(task=TASK, enqueue=False)
    export_build(export_id=export.pk)
    export.refresh_from_db()
    export = export_freeze(export=export, keep_pending=True)
    assert export.is_frozen
    manifest = training_manifest(export=export)
    export_mark_used(export=export)

    job = training_start(task=TASK, export_id=export.pk, manifest=manifest, candidates=4, enqueue=False)
    job = training_run(job_id=job.pk)
    assert job.status == "succeeded", job.error
    result = job.result
    assert len(result["candidates"]) == 4
    baseline_drifted = result["baseline"]["local_accuracy"][DRIFTED]
    best = next(c for c in result["candidates"] if c["model_version"] == result["best"])
    # On the export's test split (the same for the baseline and every candidate), the drifted advertiser rises and
    # no other advertiser drops by more than a point, or one of its images on a split this small (the best
    # candidate is picked among those that keep them all).
    assert best["local_accuracy"][DRIFTED] >= baseline_drifted + 0.05, result
    for slug in ("alpha-cars", "beta-auto"):
        tolerance = drop_tolerance(best["local_counts"][slug]["reviewed"])
        assert best["local_accuracy"][slug] >= result["baseline"]["local_accuracy"][slug] - tolerance
    # The advertiser nobody labelled is judged by its confident model tags: the best candidate keeps them.
    assert UNLABELLED not in result["trained_for"]
    # (a sample of its 120 images: the confident ones, 53 with the starter models)
    assert best["confident_flips"][UNLABELLED]["confident"] >= 40, best["confident_flips"]
    assert flips_over_tolerance(best["confident_flips"], result["trained_for"]) == {}, result

    candidate = best_candidate(job)
    shadow = shadow_run(pass_id=shadow_start(version=candidate, enqueue=False).pk)
    assert shadow.status == "succeeded"
    classified = Classification.objects.count()
    assert promotion_regressions(version=candidate) == []  # the guard, on every live image, finds none either
    model_promote(version=candidate)
    assert Classification.objects.count() == classified  # instant: the shadow pass classified everything
    assert ModelHead.objects.get(task=TASK, is_active=True).model_version == candidate

    # On the images nobody labelled (never trained on), the promoted model does better on the drifted style and
    # keeps the others (a few images each either way: 80 unlabelled images per advertiser). The rise asked of the
    # drifted style here is two of its 80 images: the test split above asks for 5 points, and the guards now keep
    # the candidates that bought more with another advertiser's confident tags from being picked, so the margin
    # left on 80 images moves with the order a loaded machine fetches in (+2 to +6 images measured).
    after = scenario.accuracy()
    assert after[DRIFTED] >= before[DRIFTED] + 0.025, (before, after)
    for slug in ("alpha-cars", "beta-auto", UNLABELLED):
        assert after[slug] >= before[slug] - 0.05, (slug, before, after)

    model_rollback(task=TASK)
    assert scenario.accuracy() == before


def test_both_tasks_with_heads_scoped_to_the_drifted_advertiser_leave_everyone_else_exactly_as_they_were():
    """The drift is flagged on the drifted advertiser's first Run (not on a usual one); its labels of both tasks train
    heads scoped to it (the global heads as their prior); promoted, they lift it on both tasks, while every other
    advertiser's tags stay exactly what the active model says (the scoped heads answer for the drifted one alone);
    a rollback per advertiser puts everything back."""
    call_command("register_starter_models")
    scenario = LoopScenario(sizes={"alpha-cars": 320, "beta-auto": 120, DRIFTED: 240}, tasks=TASKS)
    scenario.generate()
    with scenario.serving():
        scenario.run_all()
        flags = {
            slug: [flag["code"] for flag in Run.objects.get(pk=shop.runs[0]).health_flags]
            for slug, shop in scenario.shops.items()
        }
        assert "drift" in flags[DRIFTED], flags
        assert "drift" not in flags["beta-auto"], flags  # measured against alpha's images: the usual style
        scenario.label(fixes={DRIFTED: 160, "alpha-cars": 80})
        before = {task: scenario.accuracy(task) for task in TASKS}
        stored_before = dict(EffectiveTag.objects.exclude(sitemap__advertiser__slug=DRIFTED).values_list("pk", "label"))
        drifted = Advertiser.objects.get(slug=DRIFTED)

        for task in TASKS:
            export = export_create(task=task, enqueue=False)
            export_build(export_id=export.pk)
            export.refresh_from_db()
            export = export_freeze(export=export, keep_pending=True)
            manifest = training_manifest(export=export)
            job = training_start(
                task=task, export_id=export.pk, manifest=manifest, candidates=4, advertiser=drifted, enqueue=False
            )
            job = training_run(job_id=job.pk)
            assert job.status == "succeeded", job.error
            assert job.result["trained_for"] == [DRIFTED]  # its labels alone
            candidate = best_candidate(job)
            assert candidate.advertiser == drifted
            shadow = shadow_run(pass_id=shadow_start(version=candidate, enqueue=False).pk)
            assert shadow.total == len(scenario.placements(scenario.shops[DRIFTED]))  # its images only
            assert promotion_regressions(version=candidate) == []
            model_promote(version=candidate)

        after = {task: scenario.accuracy(task) for task in TASKS}
        assert after[TASK][DRIFTED] >= before[TASK][DRIFTED] + 0.1, (before, after)
        # The starter models get 85% of this style's colors right already: the scoped color head adds one to three of
        # the 80 held-out images (0.85 -> 0.8625 to 0.8875 measured, as the labels picked move with the fetch order);
        # what is asked here is that it costs none.
        assert after[Task.COLOR][DRIFTED] >= before[Task.COLOR][DRIFTED], (before, after)
        for task in TASKS:
            for slug in ("alpha-cars", "beta-auto"):
                assert after[task][slug] == before[task][slug], (task, slug, before, after)
        # Not a point, not one tag: every other advertiser's stored tags are what they were.
        assert (
            dict(EffectiveTag.objects.exclude(sitemap__advertiser__slug=DRIFTED).values_list("pk", "label"))
            == stored_before
        )
        assert ModelHead.objects.filter(is_active=True, model_version__advertiser__isnull=False).count() == 0

        for task in TASKS:
            scoped_rollback(advertiser=drifted, task=task)
        assert {task: scenario.accuracy(task) for task in TASKS} == before
