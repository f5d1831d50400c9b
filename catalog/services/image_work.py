"""The CPU work of a Run's new images, in forked processes: decode, keys and thumbnail (catalog.imaging), and what
the Run's stream makes of the same decode (the classifier's models: settings.RUN_CLASSIFY_STREAM).

A Run's fetch threads keep the network, the storage and the database; each new image's bytes go down a pipe to
one of these processes and its facts come back, so the decoding runs on every core instead of under the fetch
threads' GIL. Each process decodes one image at a time under its own pixel budget, dies with its parent, and is
ended when the fetch step ends.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Protocol

from django.conf import settings
from django.db import connections

from catalog.decoding import BIG_DECODE_PIXELS, libc, malloc_give_back
from catalog.imaging import ImageFacts, ImageRefused, PixelBudget, ViewedImage, inspect_image, inspect_image_viewed

logger = logging.getLogger(__name__)


@functools.cache
def decode_budget() -> PixelBudget:
    """The decoded pixels this process may hold at once (settings.IMAGE_DECODE_BUDGET_PIXELS), shared by every Run it
    executes: fetch threads that decode themselves (no fetch process, or none left) share it, as 8 threads decoding
    60 MP floods at once would need 2 GB; each fetch process has its own (reset after the fork) for its one image at
    a time. Across processes, what bounds a worker is that no PNG, WebP or JPEG is decoded at full size and any other
    big decode waits for the machine's one big-decode slot (catalog.decoding.big_decode_slot)."""
    return PixelBudget(settings.IMAGE_DECODE_BUDGET_PIXELS)


class NewImageStream(Protocol):
    """What a Run does with its new images besides keying and storing them: the classifier streams them to its
    models (settings.RUN_CLASSIFY_STREAM makes one per Run). `before_fork` runs in the fetch's process just before it
    forks its children (what it loads there, the children share copy-on-write); `examine` where the image is decoded
    (a forked child of the fetch's process pool, which calls `child_started` first); `record` in the thread that records
    the outcomes, inside the batch's transaction, after its placements are written (their assets are committed
    already)."""

    #: Keep the decode at no less than this (w, h) for `examine`; None: nothing is examined.
    keep: tuple[int, int] | None

    def before_fork(self) -> None: ...

    def child_started(self) -> None: ...

    def examine(self, data: bytes, view: ViewedImage | None) -> object | None:
        """What to store with the asset, from its decode (`view`: None when it cannot serve: decode `data`)."""
        ...

    def record(self, new_assets: list[tuple[int, object | None]]) -> None:
        """The assets this Run downloaded, each with what `examine` made of it (None: nothing examined). The
        stored tags of every placement showing them are refreshed right after, in the same transaction
        (catalog.signals.placements_changed): what `record` stores needs no refresh of its own."""
        ...


@dataclass
class Inspected:
    """A new image's CPU work, sent back from a fetch process: its facts or why it is refused, and what the stream
    made of it."""

    facts: ImageFacts | None
    refused: tuple[str, str] | None = None  # (reason, message) of ImageRefused, which does not pickle
    examined: object | None = None
    error: str | None = None  # an unexpected exception in the child


def inspect_new_image(data: bytes, stream: NewImageStream | None, *, budget: PixelBudget) -> Inspected:
    """Decodes the bytes once for the asset's facts and, with the same decode, the stream's `examine`."""
    keep = stream.keep if stream is not None else None
    try:
        if stream is None or keep is None:
            facts, view = inspect_image(data, budget=budget), None
        else:
            facts, view = inspect_image_viewed(data, keep=keep, budget=budget)
    except ImageRefused as exc:
        return Inspected(None, refused=(exc.reason, str(exc)))
    if stream is None or keep is None:
        return Inspected(facts)
    try:
        examined = stream.examine(data, view)
    except Exception:  # the asset still comes in; what the stream missed, the Run's later step does
        logger.exception("examining a new image failed")
        examined = None
    return Inspected(facts, examined=examined)


_PR_SET_PDEATHSIG = 1  # prctl option, linux/prctl.h


class WorkersGone(Exception):
    """No fetch process is left to take an image (killed, out of memory): the fetch threads decode it themselves."""


def _child_main(conn: Connection, stream: NewImageStream | None, parent_pid: int) -> None:
    """A fetch process: takes image bytes from its pipe and sends back what inspect_new_image makes of them, until it
    gets an empty message, the pipe closes, or its parent dies."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business: it ends the children
    # This process's own budget: the parent's, copied by the fork, may be counted down or have its lock held.
    decode_budget.cache_clear()
    if stream is not None:
        stream.child_started()
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not data:
            return
        try:
            inspected = inspect_new_image(data, stream, budget=decode_budget())
        except Exception as exc:  # a bug on one image: its URL fails with the reason, the process goes on
            logger.exception("inspecting a new image failed")
            inspected = Inspected(None, error=f"{type(exc).__name__}: {exc}")
        conn.send(inspected)
        if inspected.facts is not None and inspected.facts.width * inspected.facts.height > BIG_DECODE_PIXELS:
            # What a big image's decodes and the models freed leaves this process before its next image: the two
            # fetch processes do not sit on two big images' worth at once. Not after ordinary photos, whose next
            # decode would fault the same pages in again.
            malloc_give_back()


def _die_with_parent(parent_pid: int) -> None:
    """The kernel kills this child when its parent dies (a worker killed by a hard time limit or the OOM killer): no
    orphan is left waiting for work. Linux only; elsewhere the pool's shutdown is what ends the children."""
    try:
        libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the prctl
        os._exit(1)


@contextmanager
def _children_allowed() -> Iterator[None]:
    """Lets a daemonic process fork the pool: Celery's prefork children are daemonic, and multiprocessing refuses
    them children because those could outlive them. These cannot: the pool is shut down before the fetch step
    returns, and each child dies with its parent (_die_with_parent)."""
    config = getattr(multiprocessing.current_process(), "_config", {})
    daemon = config.get("daemon")
    config["daemon"] = False
    try:
        yield
    finally:
        if daemon is not None:
            config["daemon"] = daemon


class ImageWorkers:
    """Forked processes that do the CPU work of new images, so that it runs on every core instead of in the fetch
    threads under the GIL. Each has a pipe that one fetch thread at a time borrows: the bytes go down it and the
    Inspected comes back, with no executor thread between (a ProcessPoolExecutor's manager and feeder threads cost
    the parent about a millisecond of GIL an image). Each child decodes one image at a time, under its own budget."""

    def __init__(self, *, processes: int, stream: NewImageStream | None) -> None:
        connections.close_all()  # a forked child must never share this process's database connection
        context = multiprocessing.get_context("fork")
        self._free: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        self._alive = processes
        self._lock = threading.Lock()
        if stream is not None:
            stream.before_fork()
        # Fork now, while the calling thread is the only one: no lock of a fetch thread is copied while held.
        with _children_allowed():
            for n in range(processes):
                ours, theirs = context.Pipe()
                child = context.Process(
                    target=_child_main, args=(theirs, stream, os.getpid()), name=f"fetch-{n}", daemon=True
                )
                child.start()
                theirs.close()  # the child's end lives in the child only: its death closes the pipe
                self._children.append((child, ours))
                self._free.put(ours)

    def inspect(self, data: bytes) -> Inspected:
        """The image's facts and what the stream made of it, from a free child. Raises WorkersGone."""
        conn = self._borrow()
        try:
            conn.send_bytes(data)
            inspected: Inspected = conn.recv()
        except (EOFError, OSError) as exc:
            with self._lock:
                self._alive -= 1
            raise WorkersGone(f"a fetch process died: {type(exc).__name__}") from exc
        self._free.put(conn)
        if inspected.error is not None:
            raise RuntimeError(inspected.error)
        return inspected

    def _borrow(self) -> Connection:
        while True:
            try:
                return self._free.get(timeout=1.0)
            except queue.Empty:
                if self._alive <= 0:
                    raise WorkersGone("every fetch process died") from None

    def close(self) -> None:
        for _child, conn in self._children:
            with contextlib.suppress(OSError):
                conn.send_bytes(b"")  # an empty message: leave
            conn.close()
        for child, _conn in self._children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join(timeout=10)
        malloc_give_back()  # what the fetch threads freed (their arenas) goes back before the Run's next step
