"""A self-contained AudioSet-style demo corpus, synthesised procedurally so nothing has to be downloaded.

:func:`generate_demo_corpus` writes the layout described in the README ("Demo corpus layout"): the
AudioSet CSVs and sub-ontology, one FLAC per clip, and for every multi-event clip the ground-truth
track of each event (and of its unlabelled background), which sum exactly to the clip. Nine classes
of clearly different character (see :data:`DEMO_CLASSES`) are mixed into single-event clips and
clips of 2-3 overlapping events; label lists sometimes name a parent class too, as real AudioSet does.

Output is deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearsep_data import synth
from clearsep_data.corpus_writer import (  # noqa: F401  (YTID_* and MANIFEST re-exported: the demo corpus's layout)
    BACKGROUND,
    CLASS_LABELS,
    EVAL_SEGMENTS,
    MANIFEST,
    ONTOLOGY,
    OUTPUTS,
    SETTINGS,
    TRAIN_SEGMENTS,
    YTID_ALPHABET,
    YTID_LAST,
    active_rms,
    prepare_folder,
    write_clip,
    write_csv,
    write_json,
    write_segments,
    youtube_like_ids,
)
from clearsep_data.ontology import Ontology, OntologyNode

GENERATOR = "clearsep-data demo-corpus"
"""The ``generator`` of a demo corpus's ``corpus.json``: how a dataset card knows its audio is synthetic."""
GENERATOR_VERSION = 2
"""Bumped whenever the generated audio or files change for the same arguments."""

SINGLE_EVENT_FRACTION = 0.4


@dataclass(frozen=True)
class DemoClass:
    """One sound event class of the demo corpus."""

    name: str
    mid: str
    ancestors: tuple[str, ...]
    """MIDs above the class, parent first, up to a top-level AudioSet category."""
    synthesize: synth.Synthesizer
    listed_parent: str | None = None
    """An ancestor that label lists sometimes name along with the class (``Dog`` with ``Bark``)."""


ANCESTOR_NAMES: dict[str, str] = {
    "/m/09l8g": "Human voice",
    "/m/0dgw9r": "Human sounds",
    "/m/0bt9lr": "Dog",
    "/m/068hy": "Domestic animals, pets",
    "/m/0jbk": "Animal",
    "/m/020bb7": "Bird vocalization, bird call, bird song",
    "/m/015p6": "Bird",
    "/m/01280g": "Wild animals",
    "/m/07pp_mv": "Alarm",
    "/t/dd00041": "Sounds of things",
    "/m/059j3w": "Natural sounds",
    "/m/01x3z": "Clock",
    "/t/dd00077": "Mechanisms",
    "/m/05148p4": "Keyboard (musical)",
    "/m/04szw": "Musical instrument",
    "/m/04rlf": "Music",
}

DEMO_CLASSES: tuple[DemoClass, ...] = (
    DemoClass("Speech", "/m/09x0r", ("/m/09l8g", "/m/0dgw9r"), synth.speech),
    DemoClass("Bark", "/m/05tny_", ("/m/0bt9lr", "/m/068hy", "/m/0jbk"), synth.bark, listed_parent="/m/0bt9lr"),
    DemoClass(
        "Chirp, tweet", "/m/07pggtn", ("/m/020bb7", "/m/015p6", "/m/01280g", "/m/0jbk"), synth.chirp, listed_parent="/m/015p6"
    ),
    DemoClass("Siren", "/m/03kmc9", ("/m/07pp_mv", "/t/dd00041"), synth.siren),
    DemoClass("Engine", "/m/02mk9", ("/t/dd00041",), synth.engine),
    DemoClass("Bell", "/m/0395lw", ("/t/dd00041",), synth.bell),
    DemoClass("Rain", "/m/06mb1", ("/m/059j3w",), synth.rain),
    DemoClass("Tick-tock", "/m/07qjznl", ("/m/01x3z", "/t/dd00077", "/t/dd00041"), synth.tick_tock, listed_parent="/m/01x3z"),
    DemoClass("Piano", "/m/05r5c", ("/m/05148p4", "/m/04szw", "/m/04rlf"), synth.piano, listed_parent="/m/04rlf"),
)


def demo_ontology() -> Ontology:
    """The sub-ontology of the demo classes and all their ancestors, with AudioSet's real MIDs."""
    names = {**ANCESTOR_NAMES, **{demo.mid: demo.name for demo in DEMO_CLASSES}}
    descriptions = {demo.mid: f"Demo class, synthesised by clearsep_data.synth.{demo.synthesize.__name__}." for demo in DEMO_CLASSES}
    order: list[str] = []
    children: dict[str, list[str]] = {}
    for demo in DEMO_CLASSES:
        chain = [*reversed(demo.ancestors), demo.mid]  # top-level category first
        for parent, child in zip(chain, chain[1:]):
            if child not in children.setdefault(parent, []):
                children[parent].append(child)
        order.extend(mid for mid in chain if mid not in order)
    return Ontology(
        OntologyNode(id=mid, name=names[mid], child_ids=tuple(children.get(mid, ())), description=descriptions.get(mid, ""))
        for mid in order
    )


def label_vocabulary() -> list[tuple[str, str]]:
    """``(mid, display_name)`` of every label the corpus uses: the nine events, then the listed parents."""
    parents = [demo.listed_parent for demo in DEMO_CLASSES if demo.listed_parent]
    return [(demo.mid, demo.name) for demo in DEMO_CLASSES] + [(mid, ANCESTOR_NAMES[mid]) for mid in parents]


def default_eval_clips(clips: int) -> int:
    """Number of held-out clips when none is given: a fifth of the training clips, at least 20."""
    return max(20, clips // 5)


@dataclass(frozen=True)
class DemoCorpusSummary:
    """What :func:`generate_demo_corpus` wrote."""

    out_dir: Path
    seed: int
    sampling_rate: int
    seconds: float
    train_clips: int
    eval_clips: int
    single_event_clips: int
    """Training clips holding one event (eval clips are all multi-event)."""
    multi_event_clips: int
    """Training clips holding 2-3 events."""
    clips_with_background: int
    reference_files: int
    train_clips_per_class: dict[str, int]
    """Display name -> number of training clips holding an event of the class."""
    eval_clips_per_class: dict[str, int]


@dataclass(frozen=True)
class _Event:
    demo: DemoClass
    onset: int
    length: int
    gain_db: float


@dataclass(frozen=True)
class _ClipPlan:
    ytid: str
    start_seconds: float
    events: tuple[_Event, ...]
    labels: tuple[str, ...]
    background_db: float | None
    peak: float
    seed: np.random.SeedSequence


def generate_demo_corpus(
    out_dir: str | os.PathLike,
    clips: int = 300,
    eval_clips: int | None = None,
    seed: int = 0,
    sampling_rate: int = 16000,
    seconds: float = 10.0,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    single_event_fraction: float = SINGLE_EVENT_FRACTION,
) -> DemoCorpusSummary:
    """Write a demo corpus of ``clips`` training clips and ``eval_clips`` held-out multi-event clips to ``out_dir``.

    ``single_event_fraction`` of the training clips hold one event: the clean data round 0 trains on
    (lower it to make clean data scarce). ``eval_clips`` defaults to :func:`default_eval_clips`.
    ``progress`` is called with ``1`` after each clip is written. Raises ``ValueError`` for invalid
    settings and ``FileExistsError`` when ``out_dir`` is not empty and ``overwrite`` is false.
    """
    eval_clips = default_eval_clips(clips) if eval_clips is None else eval_clips
    _check_settings(clips, eval_clips, sampling_rate, seconds, single_event_fraction)
    out = Path(out_dir)
    prepare_folder(out, overwrite, SETTINGS, OUTPUTS, kind="demo corpus")
    length = int(round(seconds * sampling_rate))

    plan_rng = np.random.default_rng(seed)
    ytids = youtube_like_ids(plan_rng, clips + eval_clips)
    clip_seeds = np.random.SeedSequence(seed).spawn(clips + eval_clips)
    n_single = int(round(single_event_fraction * clips))
    train_single = plan_rng.permutation([1] * n_single + [0] * (clips - n_single))
    train = _plan_split(plan_rng, ytids[:clips], clip_seeds[:clips], train_single, length, seconds)
    held_out = _plan_split(plan_rng, ytids[clips:], clip_seeds[clips:], np.zeros(eval_clips, int), length, seconds)

    (out / "audio").mkdir(parents=True, exist_ok=True)
    manifest: list[tuple[str, str, str]] = []
    for plan in [*train, *held_out]:
        manifest.extend(_write_clip(out, plan, sampling_rate, length))
        if progress is not None:
            progress(1)

    _write_segments(out / TRAIN_SEGMENTS, train, seconds, seed)
    _write_segments(out / EVAL_SEGMENTS, held_out, seconds, seed)
    write_csv(out / CLASS_LABELS, ("index", "mid", "display_name"), [(i, *entry) for i, entry in enumerate(label_vocabulary())])
    write_csv(out / MANIFEST, ("ytid", "label", "path"), manifest)
    write_json(out / ONTOLOGY, demo_ontology().to_entries())
    summary = DemoCorpusSummary(
        out_dir=out,
        seed=seed,
        sampling_rate=sampling_rate,
        seconds=seconds,
        train_clips=clips,
        eval_clips=eval_clips,
        single_event_clips=n_single,
        multi_event_clips=clips - n_single,
        clips_with_background=sum(plan.background_db is not None for plan in [*train, *held_out]),
        reference_files=len(manifest),
        train_clips_per_class=_clips_per_class(train),
        eval_clips_per_class=_clips_per_class(held_out),
    )
    write_json(out / SETTINGS, {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "clips": clips,
        "eval_clips": eval_clips,
        "single_event_fraction": single_event_fraction,
        "single_event_clips": n_single,
        "multi_event_clips": clips - n_single + eval_clips,
        "sampling_rate": sampling_rate,
        "seconds": seconds,
        "classes": [{"mid": demo.mid, "name": demo.name} for demo in DEMO_CLASSES],
        "splits": {"train": TRAIN_SEGMENTS, "eval": EVAL_SEGMENTS},
    })
    return summary


def _check_settings(clips: int, eval_clips: int, sampling_rate: int, seconds: float, single_event_fraction: float) -> None:
    if clips < 1:
        raise ValueError(f"clips must be at least 1 (got {clips})")
    if not 0.0 <= single_event_fraction <= 1.0:
        raise ValueError(f"single_event_fraction must be between 0 and 1 (got {single_event_fraction})")
    if eval_clips < 0:
        raise ValueError(f"eval_clips must not be negative (got {eval_clips})")
    if not 8000 <= sampling_rate <= 192000:
        raise ValueError(f"sampling_rate must be between 8000 and 192000 Hz (got {sampling_rate})")
    if not 1.0 <= seconds <= 600.0:
        raise ValueError(f"seconds must be between 1 and 600 (got {seconds})")


def _plan_split(
    rng: np.random.Generator,
    ytids: Sequence[str],
    seeds: Sequence[np.random.SeedSequence],
    single: np.ndarray,
    length: int,
    seconds: float,
) -> list[_ClipPlan]:
    """Draw the events, labels and levels of a split's clips (``single[i]`` true for a single-event clip).

    Classes are drawn least-used first (random tie-break), so every class appears about equally often.
    """
    uses = np.zeros(len(DEMO_CLASSES), int)
    plans = []
    for ytid, clip_seed, is_single in zip(ytids, seeds, single):
        count = 1 if is_single else int(rng.choice([2, 3], p=[0.6, 0.4]))
        chosen = np.lexsort((rng.random(len(DEMO_CLASSES)), uses))[:count]
        uses[chosen] += 1
        events = []
        for index in chosen:
            span = rng.uniform(0.6, 1.0) if is_single else rng.uniform(0.3, 0.8)
            event_length = max(int(span * length), 1)
            onset = int(rng.integers(0, length - event_length + 1))
            events.append(_Event(DEMO_CLASSES[index], onset, event_length, 0.0 if is_single else rng.uniform(-9.0, 0.0)))
        labels = []
        for event in events:
            labels.append(event.demo.mid)
            if event.demo.listed_parent and rng.uniform() < 0.5:
                labels.append(event.demo.listed_parent)
        rng.shuffle(labels)
        background = rng.uniform(-32.0, -20.0) if rng.uniform() < 0.3 else None
        start = 10.0 * int(rng.integers(0, 31))
        plans.append(_ClipPlan(ytid, start, tuple(events), tuple(labels), background, rng.uniform(0.3, 0.9), clip_seed))
    return plans


def _render(plan: _ClipPlan, sampling_rate: int, length: int) -> np.ndarray:
    """The clip's tracks as int16 rows (events in order, then the background); their sum is the clip."""
    rng = np.random.default_rng(plan.seed)
    fade = min(int(0.01 * sampling_rate), length // 4)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / max(fade, 1))
    tracks = np.zeros((len(plan.events) + (plan.background_db is not None), length))
    for row, event in enumerate(plan.events):
        sound = event.demo.synthesize(rng, event.length, sampling_rate)
        sound *= 10 ** (event.gain_db / 20) / active_rms(sound, sampling_rate)
        sound[:fade] *= ramp
        sound[len(sound) - fade :] *= ramp[::-1]
        tracks[row, event.onset : event.onset + event.length] = sound
    if plan.background_db is not None:
        room = synth.room_tone(rng, length, sampling_rate)
        tracks[-1] = room * 10 ** (plan.background_db / 20) / active_rms(room, sampling_rate)
    peak = max(np.abs(tracks.sum(axis=0)).max(), np.abs(tracks).max())
    return np.round(tracks * (plan.peak * 32767 / peak)).astype(np.int16)


def _write_clip(out: Path, plan: _ClipPlan, sampling_rate: int, length: int) -> list[tuple[str, str, str]]:
    """Write the clip's audio (and its references when it has several events); returns its manifest rows."""
    labels = [event.demo.mid for event in plan.events] + ([BACKGROUND] if plan.background_db is not None else [])
    return write_clip(out, plan.ytid, _render(plan, sampling_rate, length), labels, sampling_rate)


def _write_segments(path: Path, plans: Sequence[_ClipPlan], seconds: float, seed: int) -> None:
    """An AudioSet segments CSV of the split's clips."""
    rows = [(plan.ytid, plan.start_seconds, plan.start_seconds + seconds, plan.labels) for plan in plans]
    write_segments(path, rows, creator=f"{GENERATOR} (version {GENERATOR_VERSION}, seed {seed})")


def _clips_per_class(plans: Sequence[_ClipPlan]) -> dict[str, int]:
    counts = Counter(event.demo.name for plan in plans for event in plan.events)
    return {demo.name: counts[demo.name] for demo in DEMO_CLASSES}


def demo_corpus_settings(folder: str | Path) -> dict | None:
    """The settings of the demo corpus in ``folder`` (its ``corpus.json``), or ``None`` when it is no demo corpus."""
    try:
        settings = json.loads((Path(folder) / SETTINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) and settings.get("generator") == GENERATOR else None
