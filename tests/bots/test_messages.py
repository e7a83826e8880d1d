"""The sentences users read for "forget my voice"."""

from __future__ import annotations

from bots.messages import forget_text
from storage.voices import ForgetReport


def test_forget_counts_saved_and_sent_once_voices() -> None:
    report = ForgetReport(
        voices_deleted=["a"],
        voices_still_owned_by_others=["b"],
        cache_entries_deleted=3,
        default_cleared=True,
        attached_voices_forgotten=["c"],
    )
    assert forget_text(report) == (
        "Done: deleted your 2 saved voice clip(s), the 1 voice(s) you sent with a request, "
        "your default voice and 3 recording(s) made with them."
    )


def test_forget_of_voices_only_sent_once_says_so() -> None:
    report = ForgetReport(attached_voices_forgotten=["c", "d"], cache_entries_deleted=1)
    assert "the 2 voice(s) you sent with a request" in forget_text(report)


def test_nothing_to_forget() -> None:
    assert forget_text(ForgetReport()) == "There was nothing of yours to delete."


def test_forget_of_recordings_only() -> None:
    report = ForgetReport(cache_entries_deleted=2)
    assert forget_text(report) == "Done: deleted 2 recording(s) made with your voices."
