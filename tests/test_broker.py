"""The embedded default's file-system broker hands a consumer whole messages only, however the writer and the
consumer interleave."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from kombu.transport import filesystem

import config.broker

ROOT = Path(__file__).resolve().parent.parent


def channel(folder: Path) -> Any:
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False,
               "control_folder": str(folder / "control")}  # fmt: skip
    connection = Connection("filesystem://localhost//", transport=config.broker.Transport, transport_options=options)
    return connection.channel()


def test_a_consumer_polling_while_a_message_is_written_never_takes_it_half_written(tmp_path, monkeypatch):
    writer, consumer = channel(tmp_path), channel(tmp_path)
    taken: list[Any] = []

    class PollingMidWrite:
        """A file whose every write lets the consumer poll first, as a worker's loop may at any moment."""

        def __init__(self, file: Any) -> None:
            self.file = file

        def write(self, data: bytes) -> int:
            try:
                taken.append(consumer._get("inference"))
            except Exception as exc:  # Empty, or the JSON error of a half-written message
                taken.append(type(exc).__name__)
            return self.file.write(data)

        def __enter__(self) -> "PollingMidWrite":
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

        def close(self) -> None:
            self.file.close()

        def fileno(self) -> int:  # kombu locks the file it writes
            return self.file.fileno()

    def opening(path: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        file = open(path, mode, *args, **kwargs)  # noqa: SIM115
        return PollingMidWrite(file) if "w" in mode else file

    for module in (config.broker, filesystem):
        monkeypatch.setattr(module, "open", opening, raising=False)
    writer._put("inference", {"body": "a batch"})
    monkeypatch.undo()

    assert taken == ["Empty"]
    assert consumer._get("inference") == {"body": "a batch"}
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]


def test_the_embedded_default_uses_it():
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"} | {
        "DJANGO_SETTINGS_MODULE": "config.settings.local"
    }
    printed = subprocess.run(
        [sys.executable, "-c", "from config.celery_app import app; print(type(app.connection_for_write().transport))"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "config.broker.Transport" in printed


@pytest.mark.parametrize("payload", [{"body": "x" * 100_000}, {"headers": {"task": "classify_batch"}, "body": []}])
def test_messages_go_through_whole(tmp_path, payload):
    writer, consumer = channel(tmp_path), channel(tmp_path)
    writer._put("default", payload)
    assert json.loads(json.dumps(consumer._get("default"))) == payload
