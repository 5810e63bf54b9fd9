"""Broad filters' bitmaps: listed once in the background per filter and revision, then used to
check candidates and, packed, as the vector search's selector."""

from __future__ import annotations

import threading

import numpy as np

from semsearch.filter_members import KEPT, FilterMembers
from semsearch.types import SearchFilter


def where(value: str) -> SearchFilter:
    return SearchFilter(metadata=(("group", value),))


class Listing:
    """Stands in for the store: the revision it reads at and the ids passing each filter."""

    def __init__(self, revision: int = 7) -> None:
        self.revision = revision
        self.calls: list[SearchFilter] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, filter_: SearchFilter) -> tuple[int, np.ndarray]:
        self.calls.append(filter_)
        self.release.wait(10)
        return self.revision, np.asarray([3, 8, 9, 64], dtype=np.int64)


def ready(members: FilterMembers, filter_: SearchFilter, revision: int):
    for _ in range(500):
        found = members.get(filter_, revision)
        if found is not None:
            return found
        threading.Event().wait(0.01)
    raise AssertionError("never listed")


def test_the_first_search_lists_in_the_background_and_the_next_ones_use_the_bitmap():
    listing = Listing()
    members = FilterMembers(listing)
    listing.release.clear()
    assert members.get(where("b"), 7) is None  # listing started, not waited for
    assert members.get(where("b"), 7) is None  # ...and not started twice
    listing.release.set()
    found = ready(members, where("b"), 7)
    assert listing.calls == [where("b")]
    assert found.count == 4
    assert found.passing([64, 1, 9, 3, 500, -2, 8]).tolist() == [64, 9, 3, 8]
    # Packed lowest bit first, as FAISS's IDSelectorBitmap reads them.
    unpacked = np.unpackbits(found.bits, bitorder="little")
    assert np.flatnonzero(unpacked).tolist() == [3, 8, 9, 64]


def test_a_listing_read_at_a_newer_revision_waits_for_the_searches_to_reach_it():
    listing = Listing(revision=8)  # a write landed between the search and the listing
    members = FilterMembers(listing)
    assert members.get(where("b"), 7) is None
    for _ in range(500):
        if listing.calls and not members._loading:
            break
        threading.Event().wait(0.01)
    assert members.get(where("b"), 7) is None  # not for revision 7...
    assert len(listing.calls) == 1  # ...and not listed again for it: what is kept is newer
    assert members.get(where("b"), 8).revision == 8  # the searches' next refresh finds it
    assert len(listing.calls) == 1


def test_one_listing_at_a_time_while_writes_keep_coming():
    """``watch`` writing beside a server: every search sees a new revision, and a listing takes
    longer than the gap between writes. One listing of a filter runs at a time."""
    listing = Listing(revision=1)
    members = FilterMembers(listing)
    listing.release.clear()
    for revision in range(1, 30):
        listing.revision = revision
        assert members.get(where("b"), revision) is None
    assert len(listing.calls) == 1
    listing.release.set()
    assert ready(members, where("b"), 29).revision == 29  # read when the listing ran: the latest


def test_old_bitmaps_are_not_used_and_only_the_last_filters_are_kept():
    listing = Listing()
    members = FilterMembers(listing)
    for value in "abcdef"[: KEPT + 1]:
        members.get(where(value), 7)
        ready(members, where(value), 7)
    assert len(members._kept) == KEPT and where("a").key not in members._kept
    listing.revision = 9
    assert members.get(where("b"), 9) is None  # revision 7's bitmap is not used at 9
    assert ready(members, where("b"), 9).revision == 9


def test_true_and_one_are_different_filters():
    """Equal in Python (``True == 1``), but they match different stored values."""
    assert SearchFilter(metadata=(("half", True),)) == SearchFilter(metadata=(("half", 1),))
    assert SearchFilter(metadata=(("half", True),)).key != SearchFilter(metadata=(("half", 1),)).key
    assert SearchFilter(metadata=(("tags", ["a"]),)).key == SearchFilter(metadata=(("tags", ["a"]),)).key
    listing = Listing()
    members = FilterMembers(listing)
    members.get(SearchFilter(metadata=(("half", True),)), 7)
    ready(members, SearchFilter(metadata=(("half", True),)), 7)
    assert members.get(SearchFilter(metadata=(("half", 1),)), 7) is None


def test_unusable_filters_are_never_listed():
    """No filter, or no revision to key it by (a search of nothing yet)."""
    listing = Listing()
    members = FilterMembers(listing)
    assert members.get(SearchFilter(), 7) is None
    assert members.get(where("b"), None) is None
    assert members.get(SearchFilter(metadata=(("tags", ["a", "b"]),)), None) is None
    threading.Event().wait(0.05)
    assert listing.calls == []
