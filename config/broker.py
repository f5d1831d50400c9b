"""The embedded default's Celery broker: kombu's file-system transport, with every message written whole before a
consumer can see it.

kombu writes a message in place (it creates the file, locks it, then writes), while a consumer takes a file by
renaming it, which no lock prevents: a worker that polls in between reads an empty file and dies on the JSON
(`JSONDecodeError: Expecting value`). A worker typed beside `bin/start`'s died so in the README walk. Here a message
is written under a name no consumer reads, then renamed to its queue's name: a rename is atomic on one file system.
"""

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"  # kombu's name: consumers sort by it
        target = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.partial")  # not "<anything>.<queue>.msg"
        try:
            with open(partial, "wb") as file:
                file.write(dumps(payload).encode())
            os.replace(partial, target)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {target!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
