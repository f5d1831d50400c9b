from django.apps import AppConfig


class BenchmarksConfig(AppConfig):
    """The benchmark commands (`manage.py benchmark_*`) and what they load. The top of the house: they measure every
    app's work together, so they may import any app, and no app imports them."""

    name = "benchmarks"
    default_auto_field = "django.db.models.BigAutoField"
