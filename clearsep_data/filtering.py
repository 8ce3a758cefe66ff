"""Thresholds that decide which separated tracks join the single-source pool."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from clearsep_data.errors import ClearSepError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib


if TYPE_CHECKING:
    from clearsep_data.quality import TrackScores


class ThresholdsError(ClearSepError):
    """A thresholds file or option that cannot be used."""


@dataclass(frozen=True)
class Thresholds:
    """Acceptance thresholds for separated tracks (all in dB).

    The defaults follow the authors' released engine output (about 10 dB of Re-SDR) and add the
    per-track checks that catch a "one track takes everything" separation.
    """

    min_re_sdr: float = 10.0
    """Clip-level: the remix must reconstruct the clip to at least this SDR."""
    min_re_sisdr: float = 10.0
    """Clip-level: the same, scale-invariant."""
    min_energy_ratio: float = -30.0
    """A track quieter than this relative to its clip is treated as (near) silence. Its clip's other
    tracks are rejected too: the clip is labelled with the event, so another track absorbed it."""
    min_consistency_sisdr: float = 5.0
    """Re-separating a track with its own query must return it to at least this SI-SDR."""
    max_leakage_db: float = -10.0
    """Re-separating a track with another query of the clip must give at most this much energy back."""
    min_predicted_si_sdr: float | None = None
    """The SI-SDR the shipped quality predictor expects the track to have must be at least this (off when ``None``;
    the loop's rounds tighten it like the others)."""

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Thresholds:
        """Read thresholds from a ``.json`` or ``.toml`` file (keys are the field names; all optional)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as error:
            raise ThresholdsError(f"{path}: cannot read thresholds ({error})") from None
        return cls().updated(values, source=str(path))

    def updated(self, values: dict, source: str = "thresholds") -> Thresholds:
        """A copy with ``values`` (field name -> number; ``None`` entries ignored) applied."""
        known = {field.name for field in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ThresholdsError(f"{source}: unknown threshold(s) {unknown}; known: {sorted(known)}")
        clean = {}
        for name, value in values.items():
            if value is None:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
                raise ThresholdsError(f"{source}: {name} must be a number, got {value!r}")
            clean[name] = float(value)
        return replace(self, **clean)

    def to_dict(self) -> dict:
        """The thresholds by name; one that is off (``None``) is left out, so that builds without it keep the
        fingerprint and track JSON they had before it existed."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string (keys sorted), as stored with every track."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def judge(self, tracks: Sequence[TrackScores]) -> list[str]:
        """Why each of one clip's separated tracks fails the thresholds (``""`` for a track that passes).

        The clip's quietest track matters to all: a labelled event cannot be near-silent, so when one track is,
        another track of the clip must hold that event.
        """
        quietest = min(track.energy_ratio for track in tracks)
        return [self.reject_reason(**asdict(track), quietest_in_clip=quietest) for track in tracks]

    def reject_reason(
        self,
        re_sdr: float,
        re_sisdr: float,
        energy_ratio: float,
        consistency_sisdr: float,
        leakage_db: float | None,
        predicted_si_sdr: float | None = None,
        quietest_in_clip: float | None = None,
    ) -> str:
        """Why a track fails the thresholds (``""`` when it passes)."""
        failures = []
        if not re_sdr >= self.min_re_sdr:
            failures.append(f"re_sdr {re_sdr:.1f} < {self.min_re_sdr:g}")
        if not re_sisdr >= self.min_re_sisdr:
            failures.append(f"re_sisdr {re_sisdr:.1f} < {self.min_re_sisdr:g}")
        if not energy_ratio >= self.min_energy_ratio:
            failures.append(f"energy_ratio {energy_ratio:.1f} < {self.min_energy_ratio:g}")
        if quietest_in_clip is not None and energy_ratio >= self.min_energy_ratio > quietest_in_clip:
            failures.append(f"another track of the clip is near-silent ({quietest_in_clip:.1f} dB): it may hold that event")
        if not consistency_sisdr >= self.min_consistency_sisdr:
            failures.append(f"consistency_sisdr {consistency_sisdr:.1f} < {self.min_consistency_sisdr:g}")
        if leakage_db is not None and not leakage_db <= self.max_leakage_db:
            failures.append(f"leakage_db {leakage_db:.1f} > {self.max_leakage_db:g}")
        minimum = self.min_predicted_si_sdr
        if minimum is not None and predicted_si_sdr is not None and not predicted_si_sdr >= minimum:
            failures.append(f"predicted_si_sdr {predicted_si_sdr:.1f} < {minimum:g}")
        return "; ".join(failures)
