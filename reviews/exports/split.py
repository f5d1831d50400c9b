"""The train/test split of a dataset export: grouped, stratified by label, sticky. Plain Python, no Django.

- Grouped: items that share a listing, or a near-duplicate picture (cluster id, else the asset itself), are one
  group (union-find over both keys, transitively), and a group is never split across train and test: a model is
  never tested on a photo of a car it was trained on, nor on a re-encoded copy of a training image.
- Sticky: a group holding an item that was in test in any earlier export (or in the export being extended) goes
  to test, so extending a dataset never moves a test image into train. Items an extended export had in train
  keep train unless their group is pulled into test (a move to test never leaks).
- Stratified: the other groups are taken in an order fixed by a hash of (seed, group key), and each goes to test
  when that brings every label's test count closer to `test_share` of the label's items.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

TRAIN = "train"
TEST = "test"
TEST_SHARE = 0.2


@dataclass(frozen=True)
class SplitItem:
    """What the split needs to know about one item. `key` is the caller's identifier of the item."""

    key: Hashable
    label: str
    picture: int  # near-duplicate cluster id, else the asset id
    listing: int | None = None
    pinned: str | None = None  # the split it had in the export being extended
    sticky_test: bool = False  # it (or its picture) was in test in an earlier export


@dataclass(frozen=True)
class Assignment:
    split: str
    group: str


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, node: str) -> str:
        self.parent.setdefault(node, node)
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # path compression
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            # The smaller key becomes the root: a group's name does not depend on the order items come in.
            low, high = sorted((root_a, root_b))
            self.parent[high] = low


def _keys(item: SplitItem) -> list[str]:
    keys = [f"picture:{item.picture}"]
    if item.listing is not None:
        keys.append(f"listing:{item.listing}")
    return keys


def group_items(items: Iterable[SplitItem]) -> dict[Hashable, str]:
    """Item key -> group key: items linked by a listing or a picture, transitively, share the group key (the
    smallest of the group's listing and picture keys)."""
    items = list(items)
    groups = _UnionFind()
    for item in items:
        first, *others = _keys(item)
        groups.find(first)
        for other in others:
            groups.union(first, other)
    return {item.key: groups.find(_keys(item)[0]) for item in items}


def _order(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def targets(label_counts: Counter[str], test_share: float) -> dict[str, int]:
    """The number of test items aimed at per label: `test_share` of its items, rounded half up."""
    return {label: int(count * test_share + 0.5) for label, count in label_counts.items()}


def assign_splits(
    items: Sequence[SplitItem], *, test_share: float = TEST_SHARE, seed: int = 0
) -> dict[Hashable, Assignment]:
    """Item key -> (split, group key). Deterministic for the same items, `test_share` and `seed`."""
    group_of = group_items(items)
    members: dict[str, list[SplitItem]] = defaultdict(list)
    for item in items:
        members[group_of[item.key]].append(item)

    aim = targets(Counter(item.label for item in items), test_share)
    in_test: Counter[str] = Counter()
    split_of: dict[str, str] = {}
    free: list[str] = []
    for group, group_items_ in members.items():
        if any(item.sticky_test or item.pinned == TEST for item in group_items_):
            split_of[group] = TEST
            in_test.update(item.label for item in group_items_)
        elif any(item.pinned == TRAIN for item in group_items_):
            split_of[group] = TRAIN
        else:
            free.append(group)

    for group in sorted(free, key=lambda name: _order(seed, name)):
        counts = Counter(item.label for item in members[group])
        # Moving the group to test changes each of its labels' distance to the aim; take it when the sum shrinks.
        change = sum(
            abs(in_test[label] + n - aim[label]) - abs(in_test[label] - aim[label]) for label, n in counts.items()
        )
        if change < 0:
            split_of[group] = TEST
            in_test.update(counts)
        else:
            split_of[group] = TRAIN

    return {item.key: Assignment(split_of[group_of[item.key]], group_of[item.key]) for item in items}
