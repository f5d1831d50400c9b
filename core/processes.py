"""What /proc says about a process tree (Linux only): its processes, their memory as a container's limit counts it
(PSS), and their CPU time. Used by the benchmarks that run a worker and a web server as processes of their own, and
by the memory tests."""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it, parents before their children."""
    return [pid for pid, _ in process_tree_depths(root)]


def process_tree_depths(root: int) -> list[tuple[int, int]]:
    """(pid, depth) of `root` (depth 0) and every process descended from it, parents before their children."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [(root, 0)]
    while todo:
        pid, depth = todo.pop(0)
        tree.append((pid, depth))
        todo.extend((child, depth + 1) for child in parents.get(pid, []))
    return tree


def rollup_kb(pid: int) -> dict[str, int]:
    """The process's smaps_rollup figures in KB (Pss, Pss_Anon, Pss_File, ...); empty once it is gone."""
    figures = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                name, _, value = line.partition(":")
                if value.strip().endswith("kB"):
                    figures[name] = int(value.split()[0])
    except (OSError, ValueError):
        return {}
    return figures


def pss_kb(pid: int) -> int:
    """The process's proportional set size (shared pages divided among their users), in KB; 0 once it is gone."""
    return rollup_kb(pid).get("Pss", 0)


def cpu_seconds(pid: int, *, waited_children: bool = False) -> float:
    """User + system CPU seconds the process used so far (with `waited_children`, also those of its children that
    ended and were waited for); 0.0 once it is gone."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if waited_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def command_name(pid: int) -> str:
    """The process's command name (/proc/<pid>/comm), "" once it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""
