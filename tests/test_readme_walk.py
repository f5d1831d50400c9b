"""A newcomer's walk through the README, as written: `bin/start` in a fresh var/ (embedded defaults, no server),
then every shell example of the README in order, on this machine: each line of every bash block, the commands a
block's comment tells the reader to type, and the commands shown in the prose (`manage.py cancel_run RUN_ID`,
`.venv/bin/celery -A config beat`, ...). The API Run must reach `succeeded` with only `bin/start` running.

A line that cannot run as typed here (a reader's own file or site, minutes of benchmark, an install) is listed in
INSTEAD with what the walk does instead: a cheap substitute, or the reason it is not run. A README example that is
neither run nor listed cannot exist: every example found is run unless INSTEAD names it.

The walk writes a table of every example and its result to IMAGETAGGER_README_WALK_REPORT (default: readme-walk.md
in the test's tmp dir) and prints it. Slow (a few minutes) and it starts processes: run it with
IMAGETAGGER_README_WALK=1.
"""

import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
STARTER = ROOT / "classifier/starter_models"
WALKING = bool(os.environ.get("IMAGETAGGER_README_WALK"))
needs_walk = pytest.mark.skipif(not WALKING, reason="walks the README with bin/start: IMAGETAGGER_README_WALK=1")

# Inline code that is a command to type: a program of the venv or of bin/, a management command (`manage.py x`,
# or `benchmark_grid --images N`), or one of the tools the README names.
COMMAND_SPAN = re.compile(r"^(?:\.venv/bin/|bin/|manage\.py [a-z]|(?:celery|curl|docker|pip|ruff) |[a-z_]+ --)")
# A command that a bash block's comment tells the reader to type: "(elsewhere: .venv/bin/celery ... training),".
COMMAND_IN_COMMENT = re.compile(r"\.venv/bin/[^()]*[^(),\s]")
# Refused, empty reply, reset: runserver restarting after a file changed (others edit the tree a walk runs from).
CURL_CONNECTION_LOST = {7, 52, 56}


@dataclass(frozen=True)
class Example:
    section: str
    line: str  # as the README shows it: a bash line (continuations joined, with its comment) or a code span
    code: str  # the command in it
    where: str  # "bash", "comment" (of a bash block) or "prose"


def sections() -> list[tuple[str, str]]:
    """(title, body) of every section, a subsection titled with its chapter's title and its own."""
    parts = re.split(r"^(#{2,3} .*)$", README, flags=re.MULTILINE)
    chapter, found = "", []
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        chapter = title if title.startswith("## ") else chapter
        name = f"{chapter} / {title}" if title != chapter else title
        found.append((re.sub(r"#+ ", "", name), body))
    return found


def examples() -> list[Example]:
    """Every shell example of the README, in order: bash lines, commands in their comments, commands in prose."""
    found = []
    for title, body in sections():
        for match in re.finditer(r"```(\w*)\n(.*?)```|`([^`\n]+)`", body, flags=re.DOTALL):
            language, block, span = match.groups()
            if span is not None:
                if COMMAND_SPAN.match(span):
                    found.append(Example(title, span, span, "prose"))
                continue
            if language != "bash":
                continue  # output, JSON, the layout
            for raw in block.replace("\\\n", " ").splitlines():
                line = raw.strip()
                if line.startswith("#"):
                    found += [Example(title, line, m.group(), "comment") for m in COMMAND_IN_COMMENT.finditer(line)]
                elif line:
                    found.append(Example(title, line, line.split("  #")[0].strip(), "bash"))
    return found


def typed(code: str) -> str:
    """The command a reader types for a shorthand of the prose: `manage.py x` and `benchmark_x --y` are run as the
    bash blocks run them, from the checkout with the venv's python; `celery` is the venv's."""
    code = re.sub(r"^(?:\.venv/bin/python )?manage\.py ", ".venv/bin/python manage.py ", code)
    code = re.sub(r"^([a-z_]+ --)", r".venv/bin/python manage.py \1", code)
    return re.sub(r"^celery ", ".venv/bin/celery ", code)


class Refused(AssertionError):
    pass


@dataclass
class Walk:
    tmp: Path
    web: int
    demo: int
    env: dict[str, str]
    rows: list[tuple[Example, str, float]] = field(default_factory=list)  # with the seconds it took
    ran: dict[str, str] = field(default_factory=dict)  # a command already run -> where
    api_run: str = ""  # the API Run of sitemap 1 (the README's /api/runs/5/)
    export: str = ""  # the export export_dataset made (the README's 1)
    candidate: str = ""  # the best candidate train_candidates trained (the README's 4)
    scratch_template: Path | None = None

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web}"

    @property
    def demo_url(self) -> str:
        return f"http://127.0.0.1:{self.demo}"

    def feed(self) -> Path:
        """The sample feed, naming the demo's photos on the walk's demo port."""
        feed = self.tmp / "scrape.json"
        feed.write_text((ROOT / "examples/scrape.json").read_text().replace("127.0.0.1:8001", f"127.0.0.1:{self.demo}"))
        return feed

    def sub(self, code: str) -> str:
        """The line on this walk's ports, with what earlier lines made in place of the README's numbers."""
        code = code.replace("127.0.0.1:8000", f"127.0.0.1:{self.web}")
        code = code.replace("127.0.0.1:8001", f"127.0.0.1:{self.demo}")
        if "examples/scrape.json" in code:
            code = code.replace("examples/scrape.json", str(self.feed()))
        if self.api_run:
            code = code.replace(f"{self.web_url}/api/runs/5/", self.api_run)
        return code

    def run(self, code: str, *, env: dict[str, str] | None = None, stdin: str | None = None,
            expect_failure: bool | None = False, timeout: float = 600) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Runs one line in bash from the checkout, with no terminal (so getpass reads stdin); an HTTP error fails
        a curl line, as a newcomer would see it fail. It must exit 0, or not 0 with expect_failure (None: either)."""
        line = re.sub(r"(^|\| |\$\()curl ", r"\1curl -sS --fail-with-body ", code)
        for attempt in range(4):
            done = subprocess.run(
                ["bash", "-c", f"set -euo pipefail; {line}"], cwd=ROOT, env=env or self.env, input=stdin or "",
                capture_output=True, text=True, timeout=timeout, start_new_session=True,
            )  # fmt: skip
            if done.returncode in CURL_CONNECTION_LOST and "curl " in line and attempt < 3:
                wait_for(f"{self.web_url}/", time.monotonic() + 120)
                continue
            break
        failed = done.returncode != 0
        if expect_failure is not None and failed != expect_failure:
            raise (AssertionError if failed else Refused)(
                f"exit {done.returncode}: {(done.stderr.strip() or done.stdout.strip())[-1500:]}"
            )
        return done

    def run_checked(self, code: str) -> subprocess.CompletedProcess[str]:
        done = self.run(code)
        check_output(code, done.stdout)
        return done

    def api(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request of the walk's own to the web server, through runserver's restarts (as run() does for curl)."""
        for attempt in range(4):
            try:
                return httpx.request(method, url, timeout=30, **kwargs).raise_for_status()
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                if attempt == 3:
                    raise
                wait_for(f"{self.web_url}/", time.monotonic() + 120)
        raise AssertionError("unreachable")

    def scratch(self, name: str) -> dict[str, str]:
        """The environment of a scratch var/ (a freshly migrated database of its own) named `name`."""
        if self.scratch_template is None:
            self.scratch_template = self.tmp / "scratch-template"
            self.run(".venv/bin/python manage.py migrate --no-input -v0", env=self.env | var(self.scratch_template))
        target = self.tmp / f"scratch-{name}"
        if not target.exists():
            shutil.copytree(self.scratch_template, target)
        return self.env | var(target)

    def step(self, example: Example) -> str:
        instead = instead_for(example)
        if isinstance(instead, str):
            return f"not run: {instead}"
        key = typed(example.code)
        if example.where == "prose" and key in self.ran:
            return f"ran above ({self.ran[key]})"
        self.ran.setdefault(key, example.section)
        return instead(self, example) if instead else as_typed(self, example)


def var(path: Path) -> dict[str, str]:
    return {"IMAGETAGGER_VAR_DIR": str(path)}


def check_output(code: str, out: str) -> None:
    """What every line's output must hold: JSON where --json is asked for, a succeeded Run where one ran in the
    command, English plurals, and no color on an image the models call a placeholder."""
    if "manage.py" in code and "--json" in code:
        printed = json.loads(out.strip().splitlines()[-1])
        if "run_sitemap" in code:
            assert printed["status"] == "succeeded", printed
        if "analyze_url" in code:
            colored = [
                image["url"] for image in printed["images"]
                if image["tags"].get("image_type", {}).get("label") == "Placeholder"
                and image["tags"].get("color", {}).get("label") not in (None, "", "none")
            ]  # fmt: skip
            assert not colored, f"a color for placeholders: {colored}"
    elif "run_sitemap" in code:
        assert "succeeded" in out, out[-500:]
    assert not re.search(r"\b1 images\b", out), "prints '1 images'"


def as_typed(walk: Walk, example: Example) -> str:
    code = walk.sub(typed(example.code))
    if assignment := re.match(r"^([A-Z_]+)=(\$\(.*\))$", code):
        name, value = assignment.groups()
        walk.env[name] = walk.run(f"echo {value}").stdout.strip()
        assert walk.env[name], f"{name} is empty"
        return "ok"
    out = walk.run_checked(code).stdout
    if code.startswith("curl -X POST") and code.endswith(f"{walk.web_url}/api/sitemaps/1/runs/"):
        walk.api_run = json.loads(out)["url"]
    return "ok" if typed(example.code) == example.code else f"ok, as `{typed(example.code)}`"


def wait_for(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
        except httpx.HTTPError:
            time.sleep(0.5)
        else:
            return
    raise AssertionError(f"{url} never answered")


# What the walk does instead of running a line as typed ---------------------------------------------------------------


def the_frame(walk: Walk, example: Example) -> str:
    return "ok: the walk's frame: started first in a fresh var/ on free ports, stopped last"


def daemon(walk: Walk, example: Example) -> str:
    """A worker or beat: started as typed, in a second terminal as it were, until it is ready; then stopped."""
    code = typed(example.code)
    log_path = walk.tmp / f"daemon-{len(walk.rows)}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(["bash", "-c", f"exec {code}"], cwd=ROOT, env=walk.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + DAEMON_READY_SECONDS
        while time.monotonic() < deadline:
            assert process.poll() is None, f"exit {process.returncode}: {log_path.read_text()[-1500:]}"
            if " worker " in code:
                try:
                    worker_answers(walk, process.pid)
                except (AssertionError, subprocess.TimeoutExpired):
                    raise AssertionError(f"never answered: {log_path.read_text()[-1500:]}") from None
                ready = "answered on the broker (its pid among the workers' replies)"
                break
            if " beat" in code and "is starting." in log_path.read_text():
                time.sleep(7)  # beat's scheduler ticks at least every 5 s: it is alive past its first ticks
                assert process.poll() is None, f"exit {process.returncode}: {log_path.read_text()[-1500:]}"
                assert not re.search(r"Traceback|ERROR|CRITICAL", log_path.read_text()), log_path.read_text()[-1500:]
                ready = "printed its banner and kept running past two ticks"
                break
            time.sleep(1)
        else:
            raise AssertionError(f"not ready in {DAEMON_READY_SECONDS} s: {log_path.read_text()[-1500:]}")
    finally:
        process.terminate()  # the worker stops its own pool (TERM to the pool's processes would leave it waiting)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    return f"ok: started beside bin/start, {ready}, then stopped (TERM)"


# `-Q inference -c 2` took 83 s and more than 120 s to answer on a 2-core machine at load 5-10 (others 11-21 s).
DAEMON_READY_SECONDS = 300
# Celery's `inspect ping` folds workers of one node name (bin/start's and the walk's) into one reply; a broadcast
# lists each reply. One process asks until the worker answers or dies.
WORKER_ANSWERS = """
import os, sys
from config.celery_app import app
pid = int(sys.argv[1])
while True:
    os.kill(pid, 0)  # the worker died: ProcessLookupError
    replies = app.control.broadcast("stats", reply=True, timeout=2)
    if any(reply.get("pid") == pid for answer in replies for reply in answer.values()):
        break
"""


def worker_answers(walk: Walk, pid: int) -> None:
    walk.run(f".venv/bin/python -c '{WORKER_ANSWERS}' {pid}", timeout=DAEMON_READY_SECONDS,
             env=walk.env | {"DJANGO_SETTINGS_MODULE": "config.settings.local"})  # fmt: skip


def changepassword(walk: Walk, example: Example) -> str:
    password = secrets.token_urlsafe(12)
    out = walk.run(typed(example.code), stdin=f"{password}\n{password}\n").stdout
    assert "changed successfully" in out, out
    return "ok, typing a new password twice"


def cancel_run(walk: Walk, example: Example) -> str:
    """RUN_ID: a Run of the demo sitemap, queued without a worker to carry it, so that it is still queued."""
    queued = walk.run(
        '.venv/bin/python manage.py shell -c "from catalog.models import Sitemap; from catalog.services.runs import '
        'run_start; print(run_start(sitemap=Sitemap.objects.get(pk=1), enqueue=False).pk)"'
    ).stdout.split()[-1]  # after the shell's own line on what it imported
    out = walk.run(typed(example.code).replace("RUN_ID", queued)).stdout
    assert "cancelled" in out, out
    return f"substituted: RUN_ID = {queued}, a Run of sitemap 1 queued for it (not handed to a worker)"


def api_token_of(walk: Walk, example: Example) -> str:
    token = walk.run(typed(example.code).replace("USERNAME", "staff")).stdout.strip()
    assert re.fullmatch(r"\w{20,}", token), token
    return "substituted: USERNAME = staff"


def refresh_synopsis(walk: Walk, example: Example) -> str:
    command = typed(example.code).split(" [")[0]
    for line in (command, f"{command} --sitemap 1 --task color"):
        walk.run_checked(line)
    return "substituted: the synopsis as `refresh_effective_tags` and `... --sitemap 1 --task color`"


def own_site(walk: Walk, example: Example) -> str:
    walk.run_checked(walk.sub(typed(example.code)).replace("https://acme.example", walk.demo_url))
    return "substituted: the demo's sitemap for the reader's own site (through bin/start's worker)"


def register_yours(walk: Walk, example: Example) -> str:
    """path/to/model.onnx: the starter intent model copied under a name of its own, with its contract renamed."""
    model, spec = walk.tmp / "model.onnx", walk.tmp / "model.json"
    shutil.copyfile(STARTER / "intent.onnx", model)
    spec.write_text(json.dumps(json.loads((STARTER / "intent.json").read_text()) | {"name": "readme-walk-intent"}))
    code = typed(example.code).replace("path/to/model.onnx", str(model)).replace("path/to/model.json", str(spec))
    done = walk.run(code, expect_failure=None)
    how = "substituted: a copy of classifier/starter_models/intent.onnx with its contract named readme-walk-intent"
    if done.returncode == 0:
        assert "readme-walk-intent" in done.stdout, f"registered under another name: {done.stdout.strip()}"
        return how
    refusal = done.stderr.strip()
    assert len(refusal.splitlines()) == 1, f"a refusal of more than one line: {refusal}"
    # The same bytes are the same model: a model of its own is a file of its own.
    import onnx

    graph = onnx.load(STARTER / "intent.onnx")
    graph.doc_string = "a copy registered by the README walk"
    onnx.save(graph, model)
    out = walk.run(code).stdout
    assert "readme-walk-intent" in out, f"registered under another name: {out.strip()}"
    return f"{how}: refused ({refusal}); registered once re-saved with a doc string of its own"


def activate_starter(walk: Walk, example: Example) -> str:
    prefix = hashlib.sha256((STARTER / "intent.onnx").read_bytes()).hexdigest()[:12]
    walk.run_checked(re.sub(r" 7$", f" {prefix}", typed(example.code)))
    return f"substituted: 7 = {prefix}, the starter intent model's SHA-256 prefix (the copy above had replaced it)"


def export_after_review(walk: Walk, example: Example) -> str:
    """The text before it asks to review the demo's images on its grid first: the walk confirms each image's
    image_type through the API, as The API's example confirms a color."""
    headers = {"Authorization": f"Token {walk.env['TOKEN']}"}
    page: str | None = f"{walk.web_url}/api/sitemaps/1/images/?limit=500"
    confirmed = 0
    while page:
        listed = walk.api("GET", page, headers=headers).json()
        for image in listed["results"]:
            label = image["tags"]["image_type"]["label"]
            walk.api("POST", f"{walk.web_url}/api/images/{image['id']}/fixes/", headers=headers,
                     json={"task": "image_type", "label": label})  # fmt: skip
            confirmed += 1
        page = listed.get("next")
    walk.export = str(json.loads(walk.run_checked(typed(example.code)).stdout.strip().splitlines()[-1])["export"])
    return f"ok, after confirming the image_type of sitemap 1's {confirmed} images through the API first"


def train_candidates(walk: Walk, example: Example) -> str:
    assert walk.export, "no export: export_dataset failed above"
    code = typed(example.code).replace("--export 1", f"--export {walk.export}")
    walk.candidate = str(json.loads(walk.run_checked(code).stdout.strip().splitlines()[-1])["best"])
    return "ok" if walk.export == "1" else f"substituted: export {walk.export}"


def with_candidate(walk: Walk, example: Example) -> str:
    assert walk.candidate, "no candidate: train_candidates failed above"
    code = re.sub(r" 4( |$)", rf" {walk.candidate}\1", typed(example.code))
    if "# refused" in example.line:
        refusal = walk.run(code, expect_failure=True).stderr.strip().splitlines()[-1]
        assert "shadow pass" in refusal, refusal
        assert "--force" in refusal, f"the refusal does not name --force: {refusal}"
        result = f"ok: refused ({refusal})"
    else:
        walk.run_checked(code)
        result = "ok"
    return result if walk.candidate == "4" else f"{result}; substituted: 4 = {walk.candidate}, the best candidate"


def train_starter_models(walk: Walk, example: Example) -> str:
    if importlib.util.find_spec("torch") is None:
        refusal = walk.run(typed(example.code), expect_failure=True).stderr.strip()
        assert "pip install torch==2.13.0" in refusal, refusal
        return f"substituted: torch is not installed here, so it must refuse naming the line above: {refusal}"
    walk.run(f"{typed(example.code)} --quick --out {walk.tmp / 'starter'}")
    return "substituted: --quick --out <tmp> (~9 minutes as typed, and it rewrites the committed models)"


def smaller(arguments: str, *, database: str | None = None) -> Callable[[Walk, Example], str]:
    """The command at a size that takes seconds; a benchmark in a scratch var/ of its own (a freshly migrated
    database), as on a machine where it is the first thing run."""

    def run(walk: Walk, example: Example) -> str:
        command = f"{typed(example.code).split(' --')[0]} {arguments}"
        if (key := f"{command} ({database})") in walk.ran:
            return f"substituted: as above ({walk.ran[key]})"
        walk.ran[key] = example.section
        walk.run(command, env=walk.scratch(database) if database else walk.env)
        where = " on a scratch database of its own" if database else ""
        return f"substituted: `{command.removeprefix('.venv/bin/python ')}`{where}"

    return run


def check_deploy(walk: Walk, example: Example) -> str:
    """The production settings with what the README sets for the internet: no issues; without CACHE_URL, the
    configuration table's axes.W001."""
    production = walk.env | {
        "DJANGO_SETTINGS_MODULE": "config.settings.production", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_HTTPS": "true", "DJANGO_ALLOWED_HOSTS": "imagetagger.example",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://imagetagger.example", "CACHE_URL": "redis://127.0.0.1:6379/15",
    }  # fmt: skip
    code = typed(example.code)
    reported = walk.run(code, env=production)
    assert "no issues" in reported.stdout + reported.stderr, reported.stdout + reported.stderr
    reported = walk.run(code, env={k: v for k, v in production.items() if k != "CACHE_URL"})
    assert "axes.W001" in reported.stdout + reported.stderr, reported.stdout + reported.stderr
    return (
        "substituted: with config.settings.production, DJANGO_SECRET_KEY, DJANGO_HTTPS=true, DJANGO_ALLOWED_HOSTS, "
        "DJANGO_CSRF_TRUSTED_ORIGINS and CACHE_URL: no issues; without CACHE_URL: axes.W001"
    )


SMALL_RUNS = "--images 20 --background 200 --stack-images 16"
# Keyed by a pattern searched in the README's line (with its comment); a string is why the line is not run.
INSTEAD: dict[str, str | Callable[[Walk, Example], str]] = {
    r"^bin/start\b": the_frame,
    r"^bin/test\b": "the whole suite on the embedded default: CI (.ci/run) runs it as typed",
    r"^DATABASE_URL=\S+ CELERY_BROKER_URL=\S+ bin/test$": "the whole suite on PostgreSQL and Redis: .ci/run runs it",
    r"^bin/setup$": "bin/start runs it when .venv is missing or older than what it is built from",
    r"^bin/ci-extras$": "CI's machine setup: installs Debian's Chromium with apt",
    r"^ruff (check|format --check)$": ".ci/run runs it on the whole tree",
    r"^celery -A config$": "names the Celery app of the worker and beat commands, which run",
    r"manage\.py changepassword staff$": changepassword,
    r"manage\.py cancel_run RUN_ID$": cancel_run,
    r"celery -A config (worker|beat)": daemon,
    r"run_sitemap --advertiser acme-motors --url https://acme\.example/": own_site,
    r"manage\.py create_api_token USERNAME$": api_token_of,
    r"manage\.py refresh_effective_tags \[": refresh_synopsis,
    r"register_model path/to/model\.onnx --spec path/to/model\.json": register_yours,
    r"activate_model 7 ": activate_starter,
    r"export_dataset --task image_type --json$": export_after_review,
    r"train_candidates --export 1 --json$": train_candidates,
    r"(activate_model|shadow_pass) 4 ": with_candidate,
    r"manage\.py measure_near_duplicates$": smaller("--scenes 1 --generated 20"),
    r"^(manage\.py )?check --deploy$": check_deploy,
    r"docker compose up$": "no Docker engine on this machine: tests/test_compose.py checks the file as far as it can",
    r"^pip install torch": "installs torch's CPU build (hundreds of MB) into the venv: the optional train extra",
    r"manage\.py train_starter_models\b": train_starter_models,
    r"benchmark_runs --images 1000 5000 --background 1000000$": smaller(SMALL_RUNS, database="benchmarks"),
    r"^benchmark_runs --background 1000000$": smaller(SMALL_RUNS, database="benchmarks"),
    r"benchmark_classifier --decoders$": smaller("--decoders --images 4", database="benchmarks"),
    r"benchmark_classifier --images 256$": smaller("--images 16", database="benchmarks"),
    r"benchmark_grid( --images 1000000)?$": smaller("--images 1000 --repeat 1", database="benchmarks"),
    r"benchmark_clusters --assets 1000000$": smaller("--assets 2000 --new 1 10", database="benchmarks"),
    r"benchmark_loop --kinds --assets 2000 --fixes 200 --candidates 4": smaller(
        "--kinds --assets 150 --fixes 40 --candidates 1", database="loop-kinds"
    ),
    r"manage\.py benchmark_loop$": smaller(
        "--assets 200 --drifted 80 --others 1 --fixes 40 --other-fixes 20 --candidates 1", database="loop"
    ),
}  # fmt: skip


def instead_for(example: Example) -> str | Callable[[Walk, Example], str] | None:
    matching = [instead for pattern, instead in INSTEAD.items() if re.search(pattern, example.line)]
    assert len(matching) <= 1, f"{example.line}: more than one entry of INSTEAD"
    return matching[0] if matching else None


# The tests -----------------------------------------------------------------------------------------------------------


def test_every_kind_of_example_is_found():
    found = examples()
    codes = [example.code for example in found]
    assert ".venv/bin/python manage.py run_sitemap 1 --sync" in codes
    assert any(code.startswith("curl -X POST") and "/runs/" in code for code in codes)
    assert ".venv/bin/celery -A config worker -Q default,inference,training" in codes  # in a comment
    assert ".venv/bin/celery -A config beat" in codes  # in the prose
    assert "manage.py cancel_run RUN_ID" in codes
    assert not any(code.startswith("#") for code in codes)


def test_every_entry_of_instead_is_a_readme_line():
    lines = [example.line for example in examples()]
    stale = [pattern for pattern in INSTEAD if not any(re.search(pattern, line) for line in lines)]
    assert not stale, f"INSTEAD lists lines the README no longer has: {stale}"


def test_a_new_readme_example_is_run_unless_listed():
    example = Example("Somewhere", "manage.py frobnicate --all", "manage.py frobnicate --all", "prose")
    assert instead_for(example) is None  # so the walk runs it as typed
    assert typed(example.code) == ".venv/bin/python manage.py frobnicate --all"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@needs_walk
def test_a_newcomer_walks_the_readme(tmp_path):
    web, demo = free_port(), free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(IMAGETAGGER_VAR_DIR=str(tmp_path / "var"), IMAGETAGGER_ADDR=f"127.0.0.1:{web}",
               IMAGETAGGER_DEMO_PORT=str(demo))  # fmt: skip
    walk = Walk(tmp=tmp_path, web=web, demo=demo, env=env)
    started = time.monotonic()
    log = (tmp_path / "start.log").open("w")
    start = subprocess.Popen(
        ["bin/start"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        wait_for(f"{walk.web_url}/", deadline)
        wait_for(f"{walk.demo_url}/sitemap.xml", deadline)
        printed = (tmp_path / "start.log").read_text()
        assert f"at {walk.web_url}/\n" in printed

        walk_all(walk)
        assert walk.api_run, "no API Run of sitemap 1 was started"
        api_run_status = poll_status(walk)
    finally:
        start.send_signal(signal.SIGTERM)
        try:
            start.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(start.pid, signal.SIGKILL)
            raise
        finally:
            log.close()
            report(walk, time.monotonic() - started)
    assert api_run_status == "succeeded", (tmp_path / "start.log").read_text()[-3000:]
    failed = [f"{row[0].section}: {row[0].code}\n    {row[1]}" for row in walk.rows if "FAILED" in row[1]]
    assert not failed, "README examples that fail:\n" + "\n".join(failed)


def walk_all(walk: Walk) -> None:
    """Every example in order; a failure is recorded and the walk goes on, so the table shows every result."""
    for example in examples():
        started = time.monotonic()
        try:
            result = walk.step(example)
        except (AssertionError, subprocess.TimeoutExpired, httpx.HTTPError, KeyError, ValueError) as exc:
            kind = "refused nothing" if isinstance(exc, Refused) else type(exc).__name__
            said = str(exc).split("\nassert ")[0] if not str(exc).startswith("assert ") else str(exc)
            result = f"FAILED ({kind}): {' '.join(said.split())[:400]}"
        walk.rows.append((example, result, time.monotonic() - started))


def poll_status(walk: Walk) -> str:
    deadline = time.monotonic() + 120
    status = ""
    while time.monotonic() < deadline:
        status = json.loads(walk.run(f'curl -s -H "Authorization: Token $TOKEN" {walk.api_run}').stdout)["status"]
        if status not in ("queued", "running"):
            break
        time.sleep(1)
    return status


def report(walk: Walk, seconds: float) -> None:
    """The table of every example and its result, written where IMAGETAGGER_README_WALK_REPORT says and printed."""
    rows = walk.rows + [(example, "not reached", 0.0) for example in examples()[len(walk.rows) :]]
    lines = [
        f"README walk: {len(walk.rows)} examples in {seconds:.0f} s. 'ok': run as typed, on the walk's own ports "
        "(examples/scrape.json as a copy naming the demo's port).",
        "",
        "| # | section | example | result | s |",
        "|---|---|---|---|---|",
    ]
    for n, (example, result, took) in enumerate(rows, 1):
        cells = [example.section, f"`{example.code}`", result, f"{took:.0f}"]
        lines.append(f"| {n} | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    text = "\n".join(lines) + "\n"
    target = Path(os.environ.get("IMAGETAGGER_README_WALK_REPORT") or walk.tmp / "readme-walk.md")
    target.write_text(text)
    print(f"\n{text}\n(written to {target})")  # noqa: T201
