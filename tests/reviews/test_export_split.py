"""The export's split, as pure logic: grouped by listing and near-duplicate picture, stratified, sticky."""

from collections import Counter

from reviews.exports.split import SplitItem, assign_splits, group_items


def test_items_linked_by_a_listing_or_a_picture_are_one_group_transitively():
    items = [
        SplitItem(key="a", label="Dealer", picture=1, listing=10),
        SplitItem(key="b", label="Dealer", picture=2, listing=10),  # same listing as a
        SplitItem(key="c", label="Stock", picture=2, listing=11),  # same picture as b
        SplitItem(key="d", label="Stock", picture=3, listing=12),
    ]
    groups = group_items(items)
    assert groups["a"] == groups["b"] == groups["c"] != groups["d"]
    # The group's name does not depend on the order items come in.
    assert group_items(reversed(items)) == groups


def test_a_group_is_never_split_and_each_label_gets_about_a_fifth_in_test():
    items = [
        SplitItem(key=i, label=label, picture=i, listing=i // 3)  # three photos per listing
        for i, label in enumerate(["Dealer"] * 300 + ["Stock"] * 150 + ["Placeholder"] * 60)
    ]
    result = assign_splits(items, seed=0)

    by_group: dict[str, set[str]] = {}
    for assignment in result.values():
        by_group.setdefault(assignment.group, set()).add(assignment.split)
    assert all(len(splits) == 1 for splits in by_group.values())
    tested = Counter(item.label for item in items if result[item.key].split == "test")
    totals = Counter(item.label for item in items)
    for name, total in totals.items():
        assert abs(tested[name] / total - 0.2) <= 0.03, (name, tested[name], total)
    assert assign_splits(items, seed=0) == result  # deterministic
    assert assign_splits(items, seed=1) != result  # and the seed matters


def test_sticky_and_pinned_items_pull_their_group():
    items = [
        SplitItem(key="old-test", label="Dealer", picture=1, listing=1, sticky_test=True),
        SplitItem(key="same-listing", label="Dealer", picture=2, listing=1),
        SplitItem(key="was-train", label="Dealer", picture=3, listing=2, pinned="train"),
        SplitItem(key="kept-test", label="Stock", picture=4, listing=3, pinned="test"),
        # A new photo linking a train item's picture and a test item's listing: the group goes to test (no leak).
        SplitItem(key="bridge", label="Stock", picture=5, listing=3),
        SplitItem(key="bridged-train", label="Stock", picture=5, listing=4, pinned="train"),
    ]
    result = {key: a.split for key, a in assign_splits(items).items()}
    assert result == {
        "old-test": "test", "same-listing": "test", "was-train": "train", "kept-test": "test", "bridge": "test",
        "bridged-train": "test",
    }  # fmt: skip
