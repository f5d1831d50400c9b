"""A newcomer's walk through the README, as written: `bin/start` in a fresh var/ (embedded defaults, no server),
then every shell line of "Quick start", "Using it" (and the tagging and API examples) in order, on this machine.
The API Run must reach `succeeded` with only `bin/start` running.

Slow (a minute or two) and it starts processes: run it with IMAGETAGGER_README_WALK=1.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
WALKED = ("## Quick start", "## Using it", "## Tagging: models", "### The API")  # with their subsections

pytestmark = pytest.mark.skipif(
    not os.environ.get("IMAGETAGGER_README_WALK"), reason="walks the README with bin/start: IMAGETAGGER_README_WALK=1"
)


def sections() -> list[tuple[str, str]]:
    """(title, body) of every section, a subsection titled with its chapter's title and its own."""
    parts = re.split(r"^(#{2,3} .*)$", README, flags=re.MULTILINE)
    chapter, found = "", []
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        chapter = title if title.startswith("## ") else chapter
        found.append((title if title == chapter else f"{chapter} / {title}", body))
    return found


def shell_lines() -> list[str]:
    """The commands of the walked sections' bash blocks, continuation lines joined; bin/start and bin/test are
    what the walk runs around, not in it, and `path/to/...` stands for the reader's own file."""
    lines = []
    for title, body in sections():
        if not any(part.startswith(WALKED) for part in title.split(" / ")) or "Registering a model" in title:
            continue  # registering a model is about the reader's own ONNX file
        for block in re.findall(r"```bash\n(.*?)```", body, flags=re.DOTALL):
            joined = block.replace("\\\n", " ")
            for line in joined.splitlines():
                code = line.split("  #")[0].strip()
                if not code or code.startswith(("#", "bin/", "DATABASE_URL=", "pip ")) or "path/to/" in code:
                    continue
                lines.append(code)
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
        except httpx.HTTPError:
            time.sleep(0.5)
        else:
            return
    raise AssertionError(f"{url} never answered")


def test_shell_lines_are_found():
    lines = shell_lines()
    assert any("run_sitemap 1 --sync" in line for line in lines)
    assert any(line.startswith("curl -X POST") and "/runs/" in line for line in lines)


def test_a_newcomer_walks_the_readme(tmp_path):
    web, demo = free_port(), free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(IMAGETAGGER_VAR_DIR=str(tmp_path / "var"), IMAGETAGGER_ADDR=f"127.0.0.1:{web}",
               IMAGETAGGER_DEMO_PORT=str(demo))  # fmt: skip
    log = (tmp_path / "start.log").open("w")
    start = subprocess.Popen(
        ["bin/start"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        wait_for(f"http://127.0.0.1:{web}/", deadline)
        wait_for(f"http://127.0.0.1:{demo}/sitemap.xml", deadline)
        printed = (tmp_path / "start.log").read_text()
        assert f"at http://127.0.0.1:{web}/\n" in printed

        api_run = walk(env, web, demo)

        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            status = json.loads(run_line(f'curl -s -H "Authorization: Token $TOKEN" {api_run}', env))["status"]
            if status not in ("queued", "running"):
                break
            time.sleep(1)
        assert status == "succeeded", (tmp_path / "start.log").read_text()[-3000:]
    finally:
        start.send_signal(signal.SIGTERM)
        try:
            start.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(start.pid, signal.SIGKILL)
            raise
        log.close()


def run_line(line: str, env: dict[str, str]) -> str:
    # An HTTP error fails the line, as a newcomer would see it fail.
    line = re.sub(r"(^|\| |\$\()curl ", r"\1curl -sS --fail-with-body ", line)
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; {line}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{line}\nexit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def walk(env: dict[str, str], web: int, demo: int) -> str:
    """Runs every line; returns the URL of the API Run of sitemap 1 (the README shows it as /api/runs/5/)."""
    api_run = ""
    # The sample feed names the demo's photos on its usual port.
    feed = Path(env["IMAGETAGGER_VAR_DIR"]).parent / "scrape.json"
    feed.write_text((ROOT / "examples/scrape.json").read_text().replace("127.0.0.1:8001", f"127.0.0.1:{demo}"))
    for line in shell_lines():
        line = line.replace("127.0.0.1:8000", f"127.0.0.1:{web}").replace("127.0.0.1:8001", f"127.0.0.1:{demo}")
        line = line.replace("examples/scrape.json", str(feed))
        if api_run:
            line = line.replace(f"http://127.0.0.1:{web}/api/runs/5/", api_run)
        if assignment := re.match(r"^([A-Z_]+)=(\$\(.*\))$", line):
            name, value = assignment.groups()
            env[name] = run_line(f"echo {value}", env).strip()
            assert env[name], line
            continue
        out = run_line(line, env)
        if line.startswith("curl -X POST") and line.endswith("/api/sitemaps/1/runs/"):
            api_run = json.loads(out)["url"]
        if "--json" in line and "manage.py" in line:
            json.loads(out.strip().splitlines()[-1])
    assert api_run
    return api_run
