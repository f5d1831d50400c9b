"""What a downstream system feels after the scraper's "scrape finished": the seconds from the POST of a feed until
every tag of every image can be read through the API, and an unchanged re-POST's seconds to `succeeded`. A Celery
worker (two processes by default) and the web server run as processes of their own, as in production, against
PostgreSQL and Redis; the inventory is served over real HTTP by this process. Beside the seconds: the worker tree's
peak PSS (sampled every 100 ms) and the CPU-seconds of each group of processes (the worker and its pool, the Run's
fetch processes, PostgreSQL, the web server)."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db import connection
from rest_framework.authtoken.models import Token

from benchmarks.loads import starter_models_ensure
from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Sitemap
from catalog.services import advertiser_get_or_create
from config.commands import BaseCommand
from core.processes import command_name, cpu_seconds, process_tree_depths, pss_kb

READY_TIMEOUT = 90.0
RUN_TIMEOUT = 600.0  # a Run that neither tags everything nor ends in this long fails the benchmark, never hangs it


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TreeSampler(threading.Thread):
    """Every 100 ms: the worker tree's PSS (its peak is kept) and the CPU-seconds of each process seen, by group (the
    worker and its pool processes; deeper: the fetch processes a Run forks). A process's last figure stands once it
    is gone (its final 100 ms at most are missed)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_mb = 0.0
        self.cpu: dict[int, tuple[str, float]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            tree = process_tree_depths(self.root)
            self.peak_mb = max(self.peak_mb, sum(pss_kb(pid) for pid, _ in tree) / 1024)
            for pid, depth in tree:
                used = cpu_seconds(pid)
                if used:
                    self.cpu[pid] = ("fetch processes" if depth >= 2 else "worker and pool", used)
            self.done.wait(0.1)

    def cpu_by_group(self) -> dict[str, float]:
        groups: dict[str, float] = {}
        for group, used in self.cpu.values():
            groups[group] = groups.get(group, 0.0) + used
        return groups


def _postgres_cpu() -> float:
    """CPU-seconds of every PostgreSQL process of this machine so far (the server the benchmark's database is on),
    with the backends that ended (the server's main process waited for them)."""
    return sum(
        cpu_seconds(int(pid), waited_children=True)
        for pid in os.listdir("/proc")
        if pid.isdigit() and command_name(int(pid)).startswith("postgres")
    )


def _give_up_after(started: float, state: str) -> None:
    if time.perf_counter() - started > RUN_TIMEOUT:
        raise CommandError(f"after {RUN_TIMEOUT:.0f} s, {state}: see the worker's log")


def _gunicorn() -> str | None:
    """gunicorn beside this Python (the production extra), if installed."""
    return shutil.which("gunicorn", path=str(Path(sys.executable).parent))


def _tree_cpu(root: int) -> float:
    return sum(cpu_seconds(pid, waited_children=True) for pid, _ in process_tree_depths(root))


class Command(BaseCommand):
    help = (
        "Seconds from a scrape feed's POST to every tag readable through the API, and an unchanged re-POST's seconds "
        "to succeeded, with a Celery worker and the web server in processes of their own (PostgreSQL and Redis: "
        "DATABASE_URL and CELERY_BROKER_URL). Also the worker tree's peak PSS and CPU-seconds per process group. Use "
        "a scratch database: it adds an advertiser, a sitemap and its images."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, default=500, help="New images in the feed.")
        parser.add_argument("--per-listing", type=int, default=10, help="Images per listing (500 / 10: 50).")
        parser.add_argument("--seed", type=int, default=11, help="The generated inventory's seed.")
        parser.add_argument("--worker-processes", type=int, default=2, help="The worker's pool (--concurrency).")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **options: Any) -> None:
        if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis://"):
            raise CommandError(
                "benchmark_feed measures production's services: set DATABASE_URL=postgres://... and "
                "CELERY_BROKER_URL=redis://... (a scratch database)"
            )
        say = self.stderr.write
        starter_models_ensure(say=say)
        images = make_inventory_images(options["images"], seed=options["seed"])
        user, _ = get_user_model().objects.get_or_create(username="feed-benchmark", defaults={"is_staff": True})
        token, _ = Token.objects.get_or_create(user=user)
        advertiser = advertiser_get_or_create(slug=f"feed-benchmark-{options['seed']}-{secrets.token_hex(3)}")
        sitemap = Sitemap.objects.create(advertiser=advertiser, kind=Sitemap.Kind.FEED, url="", name="feed benchmark")
        media = Path(tempfile.mkdtemp(prefix="feed-benchmark-"))  # the processes' logs
        db = connection.settings_dict
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        env = {
            **os.environ,
            # This process's database and broker, whatever the environment says (a test's database, say).
            "DATABASE_URL": f"postgres://{db['USER']}{password}@{host}/{db['NAME']}",
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": secrets.token_hex(32),
            "DJANGO_HTTPS": "0",
            "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),  # where the models' files are
            "FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
        }
        web_port = _free_port()
        processes: list[subprocess.Popen[bytes]] = []
        try:
            with InventoryServer(images=images, images_per_listing=options["per_listing"]) as server:
                web = self._start_web(env, web_port, media)
                processes.append(web)
                worker = self._start_worker(env, options["worker_processes"], media)
                processes.append(worker)
                base = f"http://127.0.0.1:{web_port}"
                client = httpx.Client(base_url=base, headers={"Authorization": f"Token {token.key}"}, timeout=60)
                self._wait_ready(client, media / "worker.log")
                feed = self._feed(server, len(images), options["per_listing"])
                sampler = TreeSampler(worker.pid)
                sampler.start()
                before = {"postgres": _postgres_cpu(), "web": _tree_cpu(web.pid)}
                first = self._first(client, sitemap, feed, len(images))
                again = self._again(client, sitemap.pk, feed)
                sampler.done.set()
                sampler.join()
                cpu = {
                    **{group: round(used, 2) for group, used in sampler.cpu_by_group().items()},
                    "postgres": round(_postgres_cpu() - before["postgres"], 2),
                    "web": round(_tree_cpu(web.pid) - before["web"], 2),
                }
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
            shutil.rmtree(media, ignore_errors=True)
        figures = {
            "load_average": [round(value, 2) for value in os.getloadavg()],
            "images": len(images),
            "listings": -(-len(images) // options["per_listing"]),
            "worker_processes": options["worker_processes"],
            "web_server": "gunicorn"
            if shutil.which("gunicorn", path=str(Path(sys.executable).parent))
            else "runserver",
            **first,
            **again,
            "worker_peak_pss_mb": round(sampler.peak_mb, 1),
            "cpu_seconds": cpu,
        }
        if options["json"]:
            self.stdout.write(json.dumps(figures))
            return
        self._table(figures)

    def _start_web(self, env: dict[str, str], port: int, media: Path) -> subprocess.Popen[bytes]:
        """gunicorn with two workers when it is installed (the production extra), else Django's runserver."""
        gunicorn = _gunicorn()
        if gunicorn:
            command = [gunicorn, "config.wsgi", "-b", f"127.0.0.1:{port}", "--workers", "2"]
        else:
            command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
        log = (media / "web.log").open("ab")
        return subprocess.Popen(  # noqa: S603 - our own command line
            command, env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _start_worker(self, env: dict[str, str], processes: int, media: Path) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,inference"]
        command += ["--concurrency", str(processes), "-n", f"feed-benchmark-{secrets.token_hex(3)}@%h"]
        command += ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        log = (media / "worker.log").open("ab")
        return subprocess.Popen(  # noqa: S603 - our own command line
            command, env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _wait_ready(self, client: httpx.Client, worker_log: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                web_up = client.get("/api/sitemaps/?limit=1").status_code == 200
            except httpx.TransportError:
                web_up = False
            if web_up and "ready." in worker_log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise CommandError(f"the web server or the worker did not start in {READY_TIMEOUT:.0f} s: see {worker_log}")

    def _feed(self, server: InventoryServer, count: int, per_listing: int) -> dict[str, Any]:
        urls = [server.image_url(i) for i in range(count)]
        return {
            "format": "imagetagger-feed/1",
            "listings": [
                {
                    "external_id": f"car-{n}",
                    "url": f"{server.base_url}/cars/{n}",
                    "images": urls[start : start + per_listing],
                }
                for n, start in enumerate(range(0, count, per_listing))
            ],
        }

    def _first(self, client: httpx.Client, sitemap: Sitemap, feed: dict[str, Any], count: int) -> dict[str, Any]:
        """POSTs the feed, then does what a downstream system waiting for the tags does: watches the Run (a cheap
        request every 50 ms) until it has classified every image or ended, then reads the images list (pages of up to
        500) until every image has a tag of every task of the sitemap that is not `unknown` (no result yet). The
        seconds run from the POST to the end of the read that found every tag."""
        sitemap_id, tasks = sitemap.pk, list(sitemap.tasks_enabled)
        started = time.perf_counter()
        answer = client.post(f"/api/sitemaps/{sitemap_id}/runs/", json=feed)
        if answer.status_code != 202:
            raise CommandError(f"the POST answered {answer.status_code}: {answer.text[:300]}")
        run_id = answer.json()["run"]
        while True:
            run = client.get(f"/api/runs/{run_id}/").json()
            if run["classified"] >= count or run["status"] in ("succeeded", "partial", "failed"):
                break
            _give_up_after(started, f"Run {run_id} is {run['status']} with {run['classified']} of {count} classified")
            time.sleep(0.05)
        reads = 0
        while True:
            tagged, url = 0, f"/api/sitemaps/{sitemap_id}/images/?limit=500"
            while url:
                page = client.get(url).json()
                reads += 1
                tagged += sum(
                    all(item["tags"].get(task, {}).get("source", "unknown") != "unknown" for task in tasks)
                    for item in page["results"]
                )
                url = page["next"]
            if tagged >= count:
                break
            _give_up_after(started, f"{tagged} of {count} images have every tag")
            time.sleep(0.1)
        readable = time.perf_counter() - started
        status = self._wait_run(client, run_id)
        if status != "succeeded":
            flags = client.get(f"/api/runs/{run_id}/").json().get("health_flags")
            raise CommandError(f"Run {run_id} ended {status}, so its figures say nothing: {flags}")
        return {"run": run_id, "every_tag_readable_s": round(readable, 2), "api_reads": reads, "run_status": status}

    def _again(self, client: httpx.Client, sitemap_id: int, feed: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        answer = client.post(f"/api/sitemaps/{sitemap_id}/runs/", json=feed)
        if answer.status_code != 202:
            raise CommandError(f"the re-POST answered {answer.status_code}: {answer.text[:300]}")
        status = self._wait_run(client, answer.json()["run"])
        return {"repost_succeeded_s": round(time.perf_counter() - started, 2), "repost_status": status}

    def _wait_run(self, client: httpx.Client, run_id: int) -> str:
        started = time.perf_counter()
        while True:
            status = client.get(f"/api/runs/{run_id}/").json()["status"]
            if status in ("succeeded", "partial", "failed"):
                return str(status)
            _give_up_after(started, f"Run {run_id} is still {status}")
            time.sleep(0.05)

    def _table(self, figures: dict[str, Any]) -> None:
        write = self.stdout.write
        load = ", ".join(str(value) for value in figures["load_average"])
        write(
            f"a scrape feed of {figures['images']} new images in {figures['listings']} listings; a worker of "
            f"{figures['worker_processes']} processes, {figures['web_server']}, PostgreSQL and Redis; load {load}"
        )
        write(f"{'POST -> every tag readable through the API':<46} {figures['every_tag_readable_s']:>7} s  "
              f"(Run {figures['run']} {figures['run_status']}, {figures['api_reads']} page reads)")  # fmt: skip
        write(f"{'unchanged re-POST -> succeeded':<46} {figures['repost_succeeded_s']:>7} s")
        write(f"{'worker tree peak PSS':<46} {figures['worker_peak_pss_mb']:>7} MB")
        write("CPU-seconds by process group, both POSTs:")
        for group, used in figures["cpu_seconds"].items():
            write(f"  {group:<44} {used:>7}")
