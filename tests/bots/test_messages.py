"""The sentences users read for "forget everything of mine"."""

from __future__ import annotations

from bots.messages import forget_text
from bots.say import Erased
from storage.voices import ForgetReport


def voices_only(report: ForgetReport) -> Erased:
    return Erased(report, consents=0, usage_counters=0, waiting_clips=0)


def test_forget_counts_saved_and_sent_once_voices() -> None:
    report = ForgetReport(
        voices_deleted=["a"],
        voices_still_owned_by_others=["b"],
        cache_entries_deleted=3,
        default_cleared=True,
        attached_voices_forgotten=["c"],
    )
    assert forget_text(voices_only(report)) == (
        "Done: deleted your 2 saved voice clip(s), the 1 voice(s) you sent with a request, "
        "your default voice and 3 recording(s) made with them."
    )


def test_forget_of_voices_only_sent_once_says_so() -> None:
    report = ForgetReport(attached_voices_forgotten=["c", "d"], cache_entries_deleted=1)
    assert "the 2 voice(s) you sent with a request" in forget_text(voices_only(report))


def test_nothing_to_forget() -> None:
    assert forget_text(voices_only(ForgetReport())) == "There was nothing of yours to delete."


def test_forget_of_recordings_only() -> None:
    report = ForgetReport(cache_entries_deleted=2)
    assert forget_text(voices_only(report)) == "Done: deleted 2 recording(s) made with your voices."


def test_forget_everything_names_consents_waiting_clips_and_usage() -> None:
    erased = Erased(
        ForgetReport(voices_deleted=["a"], cache_entries_deleted=1, default_cleared=True),
        consents=2,
        usage_counters=9,
        waiting_clips=1,
    )
    assert forget_text(erased) == (
        "Done: deleted your 1 saved voice clip(s), your default voice, 1 recording(s) made "
        "with them, your 2 consent record(s), the 1 clip(s) waiting for your answer and your "
        "usage history."
    )


def test_forget_of_usage_alone() -> None:
    erased = Erased(ForgetReport(), consents=0, usage_counters=3, waiting_clips=0)
    assert forget_text(erased) == "Done: deleted your usage history."
