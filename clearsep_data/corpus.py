"""Corpus readers: AudioSet-style folders and Hugging Face datasets, as a stream of clips.

A corpus yields, in a deterministic order, one :class:`Clip` per usable row and one
:class:`Skip` per row that cannot be used, with the reason. Nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Clip:
    """One clip of a corpus: where its audio is and what it is labelled with."""

    index: int
    """Position of the row in the corpus (0-based, over all rows, skipped ones included)."""
    clip_id: str
    """The YouTube id (YTID) or the dataset's id for the clip."""
    start_seconds: float
    end_seconds: float
    labels: tuple[str, ...]
    """MIDs, in the order the corpus lists them."""
    audio: str | bytes
    """A path to the audio file, or its encoded bytes (Hugging Face corpora)."""
    where: str
    """Where the row comes from, for messages: ``balanced_train_segments.csv:12``, ``hf:org/name[train][3]``."""

    @property
    def duration(self) -> float:
        return self.end_seconds - self.start_seconds


@dataclass(frozen=True)
class Skip:
    """A row or clip that was not used, and why."""

    index: int
    clip_id: str
    where: str
    reason: str

    def to_json(self) -> dict:
        return {"index": self.index, "clip_id": self.clip_id, "where": self.where, "reason": self.reason}
