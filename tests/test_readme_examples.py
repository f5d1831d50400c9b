"""The README's examples stay true: every file it names is in the repository, every `manage.py` command it shows
exists, and the sample files under examples/ do what the README says they do."""

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.core.management import call_command, get_commands

from catalog.inventory import parse_feed

ROOT = Path(settings.BASE_DIR)
README = (ROOT / "README.md").read_text()
EXAMPLES = ROOT / "examples"

# A path in the repository: starts with one of its top-level folders or files, and is not part of a URL.
TOP_LEVEL = "|".join(
    re.escape(name) for name in ("examples", "bin", "config", "catalog", "classifier", "reviews", "tests", ".ci")
)
PATH = re.compile(rf"(?<![\w/.:@$-])((?:{TOP_LEVEL})/[\w./-]*|docker-compose\.yml|\.env\.example|pyproject\.toml)")
COMMAND = re.compile(r"manage\.py ([a-z_]+)")


def readme_paths() -> list[str]:
    return sorted({match.rstrip(".") for match in PATH.findall(README)})


def command_line_files() -> list[str]:
    """Files given to a command in the README's shell examples: arguments of `manage.py ...` with a dot or a slash
    (not URLs, options, shell variables, or `path/to/...`: the reader's own file) and curl's `--data @FILE`."""
    files = set()
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL):
        for line in block.splitlines():
            code = line.split("  #")[0].strip()
            if code.startswith("#"):
                continue
            files.update(re.findall(r"(?:--data|-d) @([\w./-]+)", code))
            if "manage.py" in code:
                for token in code.split("manage.py", 1)[1].split()[1:]:
                    if ("." in token or "/" in token) and not token.startswith(("http", "-", "$", "(", "path/to/")):
                        files.add(token)
    return sorted(files)


def test_the_readme_names_files_at_all():
    paths = readme_paths()
    assert "examples/photo.jpg" in paths
    assert "examples/sitemap_index.xml.gz" in paths
    assert "bin/start" in paths


@pytest.mark.parametrize("path", readme_paths())
def test_every_file_the_readme_names_is_in_the_repository(path):
    assert (ROOT / path).exists(), f"README names {path}, which is not in the repository"


@pytest.mark.parametrize("path", command_line_files())
def test_every_file_a_readme_command_reads_is_in_the_repository(path):
    assert (ROOT / path).is_file(), f"a README example reads {path}, which is not in the repository"


@pytest.mark.parametrize("command", sorted(set(COMMAND.findall(README))))
def test_every_manage_py_command_in_the_readme_exists(command):
    assert command in get_commands(), f"README shows manage.py {command}, which is no command"


def test_the_sample_files_stay_small():
    assert sum(path.stat().st_size for path in EXAMPLES.iterdir()) < 200_000


@pytest.mark.django_db
def test_classify_file_tags_the_sample_photo_as_the_readme_says(capsys):
    call_command("register_starter_models")
    capsys.readouterr()

    call_command("classify_file", str(EXAMPLES / "photo.jpg"), "--json")

    result = json.loads(capsys.readouterr().out)
    assert (result["tags"]["image_type"]["label"], result["tags"]["color"]["label"]) == ("Dealer", "Red")
    assert result["crop_source"] == "detector"
    assert result["errors"] == {}


def test_the_sample_sitemap_index_lists_the_children_shipped_beside_it(capsys):
    call_command("inspect_sitemap", str(EXAMPLES / "sitemap_index.xml.gz"), "--json")

    index = json.loads(capsys.readouterr().out)
    assert index["kind"] == "sitemapindex"
    assert index["errors"] == []
    children = [url.rsplit("/", 1)[1] for url in index["sitemaps"]]
    assert children == ["sitemap_cars.xml", "sitemap_vans.xml"]
    for child in children:
        call_command("inspect_sitemap", str(EXAMPLES / child), "--json")
        read = json.loads(capsys.readouterr().out)
        assert (read["kind"], read["errors"]) == ("urlset", [])
        assert read["pages"]


def test_the_sample_scrape_feed_is_valid():
    feed = parse_feed(json.loads((EXAMPLES / "scrape.json").read_text()))
    assert [page.external_id for page in feed.pages] == ["car-0", "car-1"]


def test_every_image_of_the_sample_scrape_feed_is_served_by_the_demo(tmp_path):
    # It pointed at /img/1/0.jpg: the demo serves generation 0 only (/img/0/<i>.jpg), so that image was a 404.
    start = (ROOT / "bin/start").read_text()
    command = re.search(r"-m catalog\.inventory_server (.*?) --port", start)
    assert command, "bin/start no longer starts catalog.inventory_server"
    server = subprocess.Popen(
        [sys.executable, "-m", "catalog.inventory_server", *command.group(1).split(), "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().removeprefix("serving ").strip()
        assert base_url.startswith("http://127.0.0.1:")
        feed = json.loads((EXAMPLES / "scrape.json").read_text())
        urls = [url for listing in feed["listings"] for url in [listing["url"], *listing["images"]]]
        assert all(url.startswith("http://127.0.0.1:8001/") for url in urls)
        for url in urls:
            response = httpx.get(url.replace("http://127.0.0.1:8001", base_url), timeout=30)
            assert response.status_code == 200, url
            if "/img/" in url:
                assert response.headers["Content-Type"] == "image/jpeg", url
    finally:
        server.terminate()
        server.wait(timeout=30)
