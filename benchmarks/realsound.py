"""Real-sound benchmark corpus: real single-source recordings from Debian packages, mixed AudioSet-style.

The demo corpus is synthetic: every class comes from one synthesiser, so a model can score well on it
without learning anything that transfers. The only real audio reachable offline here ships inside Debian
packages (game sound effects, drum kits, spoken letters and words, sound themes, a soundfont; see
``/work/shared/realsound/README.md``). This script turns them into a corpus in the demo corpus's layout,
written with the same helpers (``clearsep_data.corpus_writer``), so ``clearsep-data build / train / iterate /
evaluate`` run on it unchanged:

1. ``apt-get download`` each package of :data:`PACKAGES` into ``--cache`` (skipped when the ``.deb`` is
   there) and stream its members with ``dpkg-deb --fsys-tarfile`` (nothing is installed); the licence of
   every recording comes from the package's machine-readable ``copyright`` file.
2. Label each audio member from its path with the reviewed table :data:`LABEL_RULES` (an AudioSet
   display name, looked up in ``ontology.json``); render short phrases of :data:`GM_INSTRUMENTS` from the
   General MIDI soundfont with ``fluidsynth`` when it is installed. Trim silence, 16 kHz mono, drop
   recordings shorter than :data:`MIN_SECONDS`, cap long ones, drop classes with too few recordings.
3. Split *recordings* into train and eval, holding out whole packages (else whole drum kits, languages,
   ...) where a class has several, so eval clips never reuse a training recording.
4. Mix 10 s clips (:func:`write_corpus`): single-event clips (one recording, repeated to fill an event)
   and clips of 2-3 events of unrelated classes at levels within +-10 dB, eval clips with the per-event
   tracks as references.

Prints one JSON object (classes with recordings per split, packages and licences, unmatched files,
clips, time taken); progress goes to stderr. The corpus is deterministic for a seed.

    python benchmarks/realsound.py --output /tmp/realsound-corpus
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import soundfile as sf

from _common import finish, machine, phase
from clearsep_data import audioset
from clearsep_data.audio import AudioError, load_audio, resample
from clearsep_data.corpus_writer import (
    CLASS_LABELS,
    EVAL_SEGMENTS,
    MANIFEST,
    ONTOLOGY,
    OUTPUTS,
    SETTINGS,
    TRAIN_SEGMENTS,
    active_rms,
    prepare_folder,
    write_clip,
    write_csv,
    write_json,
    write_segments,
    youtube_like_ids,
)
from clearsep_data.ontology import Ontology

VERSION = 1
"""Bumped whenever the corpus changes for the same arguments and packages."""

PACKAGES = (
    "tuxpaint-stamps-default",
    "klettres-data",
    "ktuberling-data",
    "hydrogen-drumkits",
    "hydrogen-drumkits-effects",
    "hydrogen-data",
    "bucklespring-data",
    "minetest-data",
    "lomiri-sounds",
    "sound-theme-freedesktop",
    "fluid-soundfont-gm",
)
"""The only packages ``/work/shared/realsound/README.md`` allows for development: an independent check draws
its recordings from other packages, so nothing here may be tuned on those."""

SOUNDFONT_PACKAGE = "fluid-soundfont-gm"
SOUNDFONT_MEMBER = "usr/share/sounds/sf2/FluidR3_GM.sf2"
AUDIO_SUFFIXES = (".wav", ".ogg", ".oga", ".opus", ".flac", ".aiff", ".aif", ".mp3")

SAMPLING_RATE = 16000
CLIP_SECONDS = 10.0
MIN_SECONDS = 0.2
"""Shorter recordings (after trimming silence) are clicks, not events. Not 0.3 s: a hand clap, a closed
hi-hat or a footstep on wood is a whole event in 0.2-0.3 s (14 of the 17 claps and 18 of the 32 footsteps here)."""
MAX_SECONDS = 8.0
"""Longer recordings (ringtones) are cut here, so an event still fits a 10 s clip with room around it."""
TRIM_DB = 50.0
"""Leading and trailing 10 ms frames quieter than the loudest frame by this much are silence."""
SILENT_PEAK = 1e-3
"""A recording whose peak is below -60 dBFS is empty."""
FADE_SECONDS = 0.005
MAX_PER_SOURCE = 40
"""At most this many recordings of a class from one package (a pseudo-random but fixed choice), so that
thousands of spoken words do not drown the rest and the build stays fast."""
MIN_RECORDINGS = 5
"""Classes with fewer recordings are left out: at least one to hold out for eval and four to train on."""
EVAL_FRACTION = 0.25
"""Share of each class's recordings held out for eval (whole packages or groups come close, not exactly)."""
MIN_TRAIN_RECORDINGS = 2
"""Never hold out so much that fewer recordings than this are left to train on."""

SINGLE_EVENT_FRACTION = 0.1
"""Clean single-event clips scarce, as in ``make demo`` (benchmarks/README.md: the loop helps only there)."""
EVENT_SPAN = (0.3, 0.8)
"""Share of the clip an event of a multi-event clip spans (repeats of a short recording included)."""
SINGLE_EVENT_SPAN = (0.6, 1.0)
LEVEL_SPREAD_DB = 10.0
"""Each event of a multi-event clip sits within +-this of the reference level (active RMS)."""
REPEAT_BELOW_SECONDS = 2.0
REPEAT_PROBABILITY = 0.5
"""A recording shorter than REPEAT_BELOW_SECONDS is repeated over its event span this often in multi-event
clips (always in single-event clips): a dog barks more than once, a drummer hits the snare again."""
REPEAT_GAP_SECONDS = (0.05, 0.8)
REPEAT_JITTER_DB = 3.0
"""Each repeat is up to this much quieter than the first: no two hits are alike."""

GM_INSTRUMENTS = {"Piano": (0, 48, 84), "Violin, fiddle": (40, 55, 88), "Trumpet": (56, 55, 82), "Flute": (73, 60, 93)}
"""AudioSet class -> (General MIDI program, lowest, highest MIDI note) rendered from the soundfont."""
PHRASES_PER_INSTRUMENT = 16
RENDER_SEED = 0
"""The rendered phrases are part of the fixed inventory of recordings, not of the corpus seed."""
PENTATONIC = (0, 2, 4, 7, 9)


@dataclass(frozen=True)
class Rule:
    """Paths of ``packages`` (an fnmatch pattern) matching ``pattern`` (searched in the lower-cased member path)
    hold sounds of the AudioSet class ``name``; ``None`` leaves them out on purpose (a later rule would
    mislabel them)."""

    packages: str
    pattern: str
    name: str | None


def _kit_file(words: str, abbreviations: str = "") -> str:
    """A pattern for files of a Hydrogen drum kit whose name holds one of ``words`` anywhere or one of
    ``abbreviations`` (``BD_01``, ``hh_p``, ``RD2_01``) between non-letters (``|``-separated lists)."""
    alternatives = words.split("|") + [rf"(?<![a-z]){short}(?![a-z])" for short in filter(None, abbreviations.split("|"))]
    return rf"/drumkits/[^/]+/[^/]*({'|'.join(alternatives)})[^/]*$"


LABEL_RULES: tuple[Rule, ...] = (
    # Spoken letters, syllables, words, numbers and stamp descriptions (all languages).
    Rule("klettres-data", r"/klettres/", "Speech"),
    Rule("ktuberling-data", r"/ktuberling/sounds/", "Speech"),
    Rule("tuxpaint-stamps-default", r"_desc(_[a-z_]+)?\.(ogg|wav)$", "Speech"),
    Rule("tuxpaint-stamps-default", r"/symbols/(alphabets|math)/", "Speech"),
    Rule("sound-theme-freedesktop", r"/audio-channel-", "Speech"),
    # Tux Paint's stamp sounds: wild birds vs fowl (AudioSet files ducks and chickens under Livestock).
    Rule(
        "tuxpaint-stamps-default", r"/birds/(blackbird|crow|cuckoo|heron|lark|owl|penguin|quetzal|seagull|tucan|vulture)", "Bird"
    ),
    Rule("tuxpaint-stamps-default", r"/birds/(drake|duck|gander|hen|rooster|turkey)", "Fowl"),
    Rule("tuxpaint-stamps-default", r"/animals/insects/", "Insect"),
    Rule("tuxpaint-stamps-default", r"/percussion/cymbal", "Cymbal"),
    Rule("tuxpaint-stamps-default", r"/string/violin", "Violin, fiddle"),
    # Drum kits. File names only (kit folders such as "Millo-Drums" must not match "drum"); abbreviations such as
    # BD_01, sd_01, hh_p, RD2_01 stand alone (not inside a word).
    Rule("hydrogen-*", r"guitarstrums/", "Strum"),
    Rule("hydrogen-*", r"(rim|stick)[^/]*$", None),  # rimshots and side sticks: not the snare-head hits of "Snare drum"
    Rule("hydrogen-*", _kit_file("kick|bassdrum", "bd"), "Bass drum"),
    Rule("hydrogen-*", _kit_file("snare", "sd|sn"), "Snare drum"),
    Rule("hydrogen-*", _kit_file("hat", "hh|chh|ohh|ho"), "Hi-hat"),
    Rule("hydrogen-*", _kit_file("crash|ride|splash|china|cymbal", "cc|rc|rd|cra"), "Cymbal"),
    Rule("hydrogen-*", _kit_file("clap"), "Clapping"),
    Rule("hydrogen-*", _kit_file("cowbell", "cb"), "Cowbell"),
    Rule("hydrogen-*", _kit_file("tambourine"), "Tambourine"),
    # Keyboard clicks of an IBM Model M, one press and one release per key.
    Rule("bucklespring-data", r"/buckle/wav/", "Computer keyboard"),
    # Minetest's game sounds.
    Rule("minetest-data", r"_footstep", "Walk, footsteps"),
    Rule("minetest-data", r"/doors_[a-z_]*(open|close)", "Door"),
    Rule("minetest-data", r"/fire_(fire|large|small)", "Fire"),
    Rule("minetest-data", r"/env_sounds_water", "Water"),
    # Phone ringtones (melodies played by a phone).
    Rule("lomiri-sounds", r"/ringtones/", "Ringtone"),
    Rule("sound-theme-freedesktop", r"/phone-incoming-call", "Ringtone"),
)

GROUP_PATTERNS: dict[str, str] = {
    "hydrogen-*": r"/drumkits/([^/]+)/",
    "klettres-data": r"/klettres/([^/]+)/",
    "ktuberling-data": r"/sounds/([^/]+)/",
    "tuxpaint-stamps-default": r"_desc_([a-z_]+)\.|/stamps/([^/]+/[^/]+)/",
    "bucklespring-data": r"/wav/([0-9a-f]+)-",
    "minetest-data": r"/(?:default_)?([a-z]+)_[a-z_]*\.",
}
"""Within a package, the recordings that share a source (a drum kit, a language's speaker, a keyboard key, a
floor surface): eval holds out whole groups when a class has only one package."""

COPYRIGHT_PATH_REWRITES: dict[str, tuple[tuple[str, str], ...]] = {
    "hydrogen-*": ((r"\.h2drumkit$", "/*"),),
    "minetest-data": ((r"^mtg/", "minetest_game/"),),
}
"""DEP-5 ``Files:`` patterns name paths of the *source* tree, matched here as suffixes of installed paths;
where the two layouts differ, the source pattern is rewritten first (a drum kit archive is installed as a
folder, Minetest's ``mtg/`` as ``minetest_game/``)."""

LICENCES_NOT_MACHINE_READABLE = {SOUNDFONT_PACKAGE: "MIT"}
"""Copyright files that are not DEP-5, read by hand: fluid-soundfont-gm's README says "I hereby release Fluid
under the MIT license"."""


# --------------------------------------------------------------------------- recordings


@dataclass(frozen=True)
class Recording:
    """One single-source recording, mono float32 at the corpus rate, trimmed, labelled with an AudioSet MID."""

    recording_id: str
    mid: str
    waveform: np.ndarray
    package: str = ""
    member: str = ""
    """The member of the package (or what was rendered from it)."""
    group: str = ""
    licence: str = ""

    @property
    def seconds(self) -> float:
        return len(self.waveform) / SAMPLING_RATE


@dataclass
class PackageReport:
    """What one package gave: licences, files matched, left out and why."""

    package: str
    version: str
    audio_files: int = 0
    unmatched: int = 0
    capped: int = 0
    """Labelled files past :data:`MAX_PER_SOURCE` (never decoded)."""
    rejected: Counter = field(default_factory=Counter)
    """Decoded files left out: duplicate, too short, silent, undecodable."""
    used: Counter = field(default_factory=Counter)
    """Recordings kept, by class name."""
    licences: Counter = field(default_factory=Counter)
    note: str = ""

    def to_json(self) -> dict:
        return {
            "package": self.package,
            "version": self.version,
            "audio_files": self.audio_files,
            "unmatched": self.unmatched,
            "capped": self.capped,
            "rejected": dict(sorted(self.rejected.items())),
            "recordings": dict(sorted(self.used.items())),
            "licences": dict(sorted(self.licences.items())),
            **({"note": self.note} if self.note else {}),
        }


def package_rules(package: str) -> list[tuple[re.Pattern, str | None]]:
    """The compiled :data:`LABEL_RULES` that apply to ``package``, in order."""
    return [(re.compile(rule.pattern), rule.name) for rule in LABEL_RULES if fnmatchcase(package, rule.packages)]


def for_package(table: dict[str, object], package: str, default: object) -> object:
    """The entry of ``table`` whose fnmatch key matches ``package`` (tables key some entries by ``hydrogen-*``)."""
    return next((value for key, value in table.items() if fnmatchcase(package, key)), default)


def label_of(rules: list[tuple[re.Pattern, str | None]], member: str) -> str | None:
    """The class name of the first rule matching ``member`` (``None``: no rule, or a rule leaving it out)."""
    lowered = "/" + member.lower()
    return next((name for pattern, name in rules if pattern.search(lowered)), None)


def group_of(package: str, member: str) -> str:
    """The source within the package that ``member`` shares with others (:data:`GROUP_PATTERNS`), else ``""``."""
    pattern = for_package(GROUP_PATTERNS, package, None)
    found = re.search(pattern, "/" + member, re.IGNORECASE) if pattern else None
    return next((value for value in found.groups() if value), "") if found else ""


def fetch_deb(package: str, cache: Path) -> Path:
    """The package's ``.deb`` in ``cache``, downloaded with ``apt-get download`` unless already there."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}_*.deb"), key=lambda path: path.stat().st_mtime)
    if not found:
        done = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
        found = sorted(cache.glob(f"{package}_*.deb"))
        if done.returncode != 0 or not found:
            raise SystemExit(f"apt-get download {package} failed (run `apt-get update` first?):\n{done.stderr.strip()}")
    return found[-1]


def deb_version(deb: Path) -> str:
    """The version in a ``.deb`` name as apt writes it (``klettres-data_4%3a22.12.3-1_all.deb`` -> ``4:22.12.3-1``)."""
    return unquote(deb.name.split("_")[1])


def deb_files(deb: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """``(path, bytes)`` of the regular files of ``deb`` for which ``wanted(path)`` is true, streamed in archive
    order through ``dpkg-deb --fsys-tarfile`` (no installation, no temporary copy)."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as process:
        with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
            for member in archive:
                path = member.name.removeprefix("./")
                if member.isfile() and wanted(path):
                    yield path, archive.extractfile(member).read()
        process.stdout.read()  # let dpkg-deb finish writing before waiting for it
    if process.returncode != 0:
        raise SystemExit(f"dpkg-deb --fsys-tarfile {deb} exited with {process.returncode}")


# --------------------------------------------------------------------------- licences


def parse_copyright(text: str) -> list[tuple[list[str], str]] | None:
    """``(Files patterns, licence)`` of each stanza of a DEP-5 copyright file, in order; ``None`` if not DEP-5."""
    if not re.match(r"Format:\s*\S*copyright-format", text):
        return None
    stanzas = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Files" in fields and "License" in fields:
            stanzas.append((fields["Files"].split(), fields["License"].splitlines()[0].strip()))
    return stanzas


class Licences:
    """The licence of each installed file of a package, from its copyright file (the last matching stanza wins)."""

    def __init__(self, package: str, text: str | None):
        self.fixed = LICENCES_NOT_MACHINE_READABLE.get(package)
        stanzas = parse_copyright(text) if text else None
        if stanzas is None and self.fixed is None:
            raise SystemExit(f"{package}: copyright file missing or not DEP-5; add it to LICENCES_NOT_MACHINE_READABLE")
        rewrites = for_package(COPYRIGHT_PATH_REWRITES, package, ())
        self.stanzas = [
            ([self._regex(pattern, rewrites) for pattern in patterns], licence) for patterns, licence in stanzas or []
        ]

    @staticmethod
    def _regex(pattern: str, rewrites: Sequence[tuple[str, str]]) -> re.Pattern:
        for old, new in rewrites:
            pattern = re.sub(old, new, pattern)
        body = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
        return re.compile(rf"(^|.*/){body}$")

    def of(self, member: str) -> str:
        """The licence of the installed file ``member`` (``unknown`` when no stanza matches)."""
        if self.fixed is not None:
            return self.fixed
        found = [licence for patterns, licence in self.stanzas if any(regex.match(member) for regex in patterns)]
        return found[-1] if found else "unknown"


# --------------------------------------------------------------------------- decoding


def decode(payload: bytes) -> np.ndarray:
    """Mono float32 at :data:`SAMPLING_RATE`: libsndfile where it reads the format (10x faster than a torchcodec
    decoder per short file), else FFmpeg through ``clearsep_data.audio.load_audio``."""
    try:
        samples, rate = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
    except sf.LibsndfileError:
        return load_audio(payload, SAMPLING_RATE)
    return resample(samples.mean(axis=1), rate, SAMPLING_RATE).astype(np.float32)


def clean(waveform: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The recording trimmed of leading/trailing silence, capped at :data:`MAX_SECONDS`, with short fades so
    that no copy of it clicks in a mixture; ``(None, reason)`` when it is silent or too short."""
    if not np.isfinite(waveform).all() or np.abs(waveform).max(initial=0.0) < SILENT_PEAK:
        return None, "silent"
    hop = SAMPLING_RATE // 100
    frames = waveform[: len(waveform) // hop * hop].reshape(-1, hop)
    if len(frames) == 0:
        return None, "too short"
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-20)
    loud = np.flatnonzero(level > level.max() - TRIM_DB)
    trimmed = waveform[loud[0] * hop : (loud[-1] + 1) * hop][: int(MAX_SECONDS * SAMPLING_RATE)].copy()
    if len(trimmed) < MIN_SECONDS * SAMPLING_RATE:
        return None, "too short"
    fade = int(FADE_SECONDS * SAMPLING_RATE)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    trimmed[:fade] *= ramp
    trimmed[-fade:] *= ramp[::-1]
    return trimmed, ""


def path_key(package: str, member: str) -> str:
    """A fixed pseudo-random order of a package's files, to pick :data:`MAX_PER_SOURCE` of many; its start is the
    recording's id."""
    return hashlib.sha256(f"{package}/{member}".encode()).hexdigest()


DUPLICATE_CORRELATION = 0.999
"""Two trimmed recordings of a class with the same length and this correlation are one recording: Tux Paint
ships the same letter under several names, drum kits a hit at five velocities as scaled copies."""


@dataclass
class Inventory:
    """Recordings gathered so far, without duplicates within a class (:data:`DUPLICATE_CORRELATION`)."""

    ontology: Ontology
    recordings: list[Recording] = field(default_factory=list)
    shapes: dict[tuple[str, int], list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    """Unit-norm waveforms by (MID, length): a scaled copy trims to the same length (the trim is relative)."""

    def add(self, report: PackageReport, name: str, member: str, waveform: np.ndarray, licence: str) -> bool:
        """Clean ``waveform`` and keep it unless it is silent, too short or a duplicate (counted in ``report``)."""
        cleaned, reason = clean(waveform)
        mid = self.ontology.resolve(name)
        if cleaned is not None and self._is_duplicate(mid, cleaned):
            cleaned, reason = None, "duplicate"
        if cleaned is None:
            report.rejected[reason] += 1
            return False
        recording_id = path_key(report.package, member)[:12]
        group = group_of(report.package, member)
        self.recordings.append(Recording(recording_id, mid, cleaned, report.package, member, group, licence))
        report.used[name] += 1
        report.licences[licence] += 1
        return True

    def _is_duplicate(self, mid: str, waveform: np.ndarray) -> bool:
        shape = waveform / (np.linalg.norm(waveform) + 1e-12)
        same_length = self.shapes[(mid, len(waveform))]
        if any(abs(float(shape @ other)) > DUPLICATE_CORRELATION for other in same_length):
            return True
        same_length.append(shape)
        return False


def scan_package(package: str, deb: Path, inventory: Inventory) -> PackageReport:
    """Label the audio files of ``package`` and add up to :data:`MAX_PER_SOURCE` recordings per class."""
    report = PackageReport(package, deb_version(deb))
    rules = package_rules(package)
    copyright_path = f"usr/share/doc/{package}/copyright"
    candidates: dict[str, list[tuple[str, str, bytes]]] = defaultdict(list)
    copyright_text = None
    for path, payload in deb_files(deb, lambda path: path == copyright_path or path.lower().endswith(AUDIO_SUFFIXES)):
        if path == copyright_path:
            copyright_text = payload.decode("utf-8", errors="replace")
            continue
        report.audio_files += 1
        name = label_of(rules, path)
        if name is None:
            report.unmatched += 1
            continue
        bucket = candidates[name]
        bucket.append((path_key(package, path), path, payload))
        if len(bucket) > 4 * MAX_PER_SOURCE:  # keep memory bounded: only the first keys can be chosen
            bucket.sort()
            report.capped += len(bucket) - 2 * MAX_PER_SOURCE
            del bucket[2 * MAX_PER_SOURCE :]
    licences = Licences(package, copyright_text)
    for name, bucket in sorted(candidates.items()):
        kept = 0
        for position, (_, path, payload) in enumerate(sorted(bucket)):
            if kept == MAX_PER_SOURCE:
                report.capped += len(bucket) - position
                break
            try:
                waveform = decode(payload)
            except AudioError:
                report.rejected["undecodable"] += 1
                continue
            kept += inventory.add(report, name, path, waveform, licences.of(path))
    return report


# --------------------------------------------------------------------------- soundfont


def midi_file(events: Sequence[tuple[int, bytes]]) -> bytes:
    """A type-0 Standard MIDI File of ``(millisecond, message)`` events (one tick per millisecond)."""

    def varlen(value: int) -> bytes:
        out = [value & 0x7F]
        while value := value >> 7:
            out.append(0x80 | (value & 0x7F))
        return bytes(reversed(out))

    body, now = bytearray(b"\x00\xff\x51\x03" + (1_000_000).to_bytes(3, "big")), 0  # a quarter note per second
    for ms, message in sorted(events, key=lambda event: event[0]):
        body += varlen(ms - now) + message
        now = ms
    body += b"\x00\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + (1000).to_bytes(2, "big")
    return header + b"MTrk" + len(body).to_bytes(4, "big") + bytes(body)


def phrase_plan(rng: np.random.Generator) -> tuple[list[tuple[int, bytes]], list[tuple[str, int, int, int]]]:
    """MIDI events of every phrase of every instrument, and each phrase's ``(class, phrase, start ms, end ms)``.

    A phrase is 2-5 notes of a pentatonic scale in the instrument's register, 0.2-0.7 s each, followed by 1.5 s
    for the release to ring out; phrases are 0.5 s apart, so cutting at the known times separates them.
    """
    events: list[tuple[int, bytes]] = []
    windows = []
    now = 0
    for name, (program, low, high) in GM_INSTRUMENTS.items():
        events.append((now, bytes([0xC0, program])))
        scale = [note for note in range(low, high + 1) if note % 12 in PENTATONIC]
        for phrase in range(PHRASES_PER_INSTRUMENT):
            start = now + 10
            at = start
            for _ in range(int(rng.integers(2, 6))):
                note, velocity, length = int(rng.choice(scale)), int(rng.integers(60, 111)), int(rng.integers(200, 701))
                events += [(at, bytes([0x90, note, velocity])), (at + length, bytes([0x80, note, 0]))]
                at += length
            windows.append((name, phrase, start, at + 1500))
            now = at + 2000
    return events, windows


def render_soundfont(deb: Path, cache: Path, inventory: Inventory) -> PackageReport:
    """Phrases of :data:`GM_INSTRUMENTS` rendered dry (no reverb or chorus) from FluidR3_GM with fluidsynth."""
    report = PackageReport(SOUNDFONT_PACKAGE, deb_version(deb))
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None:
        report.note = "skipped: fluidsynth is not installed (apt-get install --no-install-recommends fluidsynth)"
        return report
    soundfont = cache / f"{SOUNDFONT_PACKAGE}_{report.version}.sf2"
    copyright_path = f"usr/share/doc/{SOUNDFONT_PACKAGE}/copyright"
    wanted = {copyright_path} | (set() if soundfont.exists() else {SOUNDFONT_MEMBER})
    copyright_text = None
    for path, payload in deb_files(deb, wanted.__contains__):
        if path == SOUNDFONT_MEMBER:
            partial = soundfont.with_suffix(".part")  # an interrupted copy must not pass for the soundfont
            partial.write_bytes(payload)
            partial.replace(soundfont)
        else:
            copyright_text = payload.decode("utf-8", errors="replace")
    licence = Licences(SOUNDFONT_PACKAGE, copyright_text).of(SOUNDFONT_MEMBER)
    events, windows = phrase_plan(np.random.default_rng(RENDER_SEED))
    with tempfile.TemporaryDirectory(prefix="realsound-") as work:
        midi, wav = Path(work) / "phrases.mid", Path(work) / "phrases.wav"
        midi.write_bytes(midi_file(events))
        command = [fluidsynth, "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(SAMPLING_RATE), "-O", "float",
                   "-T", "wav", "-F", str(wav), str(soundfont), str(midi)]
        subprocess.run(command, check=True, capture_output=True)
        rendered, rate = sf.read(wav, dtype="float32", always_2d=True)
    rendered = resample(rendered.mean(axis=1), rate, SAMPLING_RATE)
    report.audio_files = len(windows)
    for name, phrase, start, end in windows:
        window = rendered[start * SAMPLING_RATE // 1000 : end * SAMPLING_RATE // 1000]
        program = GM_INSTRUMENTS[name][0]
        inventory.add(report, name, f"{SOUNDFONT_MEMBER}#program={program}&phrase={phrase}", window, licence)
    return report


# --------------------------------------------------------------------------- classes and split


HOLDOUT_LEVELS = ("package", "group", "recording")


def keep_classes(recordings: Sequence[Recording], ontology: Ontology) -> tuple[list[Recording], dict[str, int]]:
    """The recordings of classes with at least :data:`MIN_RECORDINGS`, and the classes left out (name -> count)."""
    counts = Counter(recording.mid for recording in recordings)
    dropped = {ontology.name(mid): count for mid, count in counts.items() if count < MIN_RECORDINGS}
    return [recording for recording in recordings if counts[recording.mid] >= MIN_RECORDINGS], dict(sorted(dropped.items()))


def unit_of(recording: Recording, level: str) -> str:
    if level == "package":
        return recording.package
    if level == "group":
        return f"{recording.package}/{recording.group}"
    return recording.recording_id


def hold_out(sizes: dict[str, int], rng: np.random.Generator, fraction: float) -> list[str] | None:
    """Units (packages, groups or recordings, with their number of recordings) to hold out for eval.

    Whole units in random order until about ``fraction`` of the recordings are held out, never more than twice
    that and never leaving fewer than :data:`MIN_TRAIN_RECORDINGS` to train on; ``None`` when no such choice
    holds out at least half the share (one package holding most recordings cannot be held out).
    """
    total = sum(sizes.values())
    target = fraction * total
    held: list[str] = []
    count = 0
    for unit in rng.permutation(sorted(sizes)):
        if count >= target:
            break
        size = sizes[str(unit)]
        if count + size <= max(2 * target, 1) and total - count - size >= MIN_TRAIN_RECORDINGS:
            held.append(str(unit))
            count += size
    return held if count >= max(target / 2, 1) else None


def split_recordings(
    recordings: Sequence[Recording], rng: np.random.Generator, fraction: float = EVAL_FRACTION
) -> tuple[dict[str, str], dict[str, tuple[str, list[str]]]]:
    """``train``/``eval`` for each recording id, and for each class the level it was split at and the units held out.

    Each class is split at the coarsest level of :data:`HOLDOUT_LEVELS` that works: whole packages (eval measures
    recordings from another source, not other takes of the training ones), else whole groups of a package
    (:data:`GROUP_PATTERNS`), else single recordings.
    """
    by_class: dict[str, list[Recording]] = defaultdict(list)
    for recording in recordings:
        by_class[recording.mid].append(recording)
    split: dict[str, str] = {}
    held_out: dict[str, tuple[str, list[str]]] = {}
    for mid in sorted(by_class):
        members = by_class[mid]
        for level in HOLDOUT_LEVELS:
            sizes = Counter(unit_of(recording, level) for recording in members)
            held = hold_out(sizes, rng, fraction) if len(sizes) > 1 else None
            if held is not None:
                break
        else:
            raise ValueError(f"class {mid}: {len(members)} recordings cannot be split into train and eval")
        held_out[mid] = (level, sorted(held))
        for recording in members:
            split[recording.recording_id] = "eval" if unit_of(recording, level) in held else "train"
    return split, held_out


# --------------------------------------------------------------------------- mixing

RECORDINGS = "recordings.csv"
VALID_SEGMENTS = "valid_segments.csv"
"""Validation clips (``--valid-clips``): the held-out recordings mixed again, for choosing checkpoints."""
RECORDING_FIELDS = ("recording_id", "package", "member", "group", "licence", "mid", "name", "split", "seconds")


@dataclass(frozen=True)
class Event:
    """One recording in a clip: where each copy starts (samples) and its level (dB re the recording's active RMS)."""

    recording: Recording
    onsets: tuple[int, ...]
    gains_db: tuple[float, ...]


@dataclass(frozen=True)
class ClipPlan:
    ytid: str
    start_seconds: float
    events: tuple[Event, ...]
    peak: float
    """Peak of the mixture, full scale = 1."""

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(event.recording.mid for event in self.events)


class Picker:
    """Draws the classes of a clip least-used first (ties at random), each unrelated in the ontology to the clip's
    other classes (the engine reduces ancestor/descendant pairs to one query), and each class's recordings
    least-used first: every class and every recording of a split is used about equally often."""

    def __init__(self, recordings: Sequence[Recording], ontology: Ontology, rng: np.random.Generator):
        self.rng = rng
        self.by_class: dict[str, list[Recording]] = defaultdict(list)
        for recording in recordings:
            self.by_class[recording.mid].append(recording)
        self.mids = sorted(self.by_class)
        self.related = {mid: ontology.ancestors(mid) | ontology.descendants(mid) for mid in self.mids}
        self.uses: Counter = Counter()

    def classes(self, count: int) -> list[str]:
        chosen: list[str] = []
        for _ in range(count):
            free = [mid for mid in self.mids if mid not in chosen and not any(mid in self.related[other] for other in chosen)]
            if not free:
                break
            chosen.append(self._least_used(free))
        return chosen

    def recording(self, mid: str) -> Recording:
        options = self.by_class[mid]
        ids = self._least_used([recording.recording_id for recording in options])
        return next(recording for recording in options if recording.recording_id == ids)

    def _least_used(self, options: list[str]) -> str:
        ties = self.rng.random(len(options))
        best = min(range(len(options)), key=lambda index: (self.uses[options[index]], ties[index]))
        self.uses[options[best]] += 1
        return options[best]


def place(rng: np.random.Generator, length: int, clip_length: int, single: bool) -> tuple[int, ...]:
    """Onsets of the copies of a ``length``-sample recording: one, or (single-event clips, some short recordings)
    repeats at random gaps that fill an event span of a realistic share of the clip."""
    low, high = SINGLE_EVENT_SPAN if single else EVENT_SPAN
    span = min(max(int(rng.uniform(low, high) * clip_length), length), clip_length)
    start = int(rng.integers(0, clip_length - span + 1))
    onsets = [start]
    repeat = single or (length < REPEAT_BELOW_SECONDS * SAMPLING_RATE and rng.random() < REPEAT_PROBABILITY)
    while repeat:
        onset = onsets[-1] + length + int(rng.uniform(*REPEAT_GAP_SECONDS) * SAMPLING_RATE)
        if onset + length > start + span:
            break
        onsets.append(onset)
    return tuple(onsets)


def plan_clips(
    picker: Picker, rng: np.random.Generator, ytids: Sequence[str], single: Sequence[bool], clip_length: int
) -> list[ClipPlan]:
    """The events, placements and levels of a split's clips (``single[i]``: clip ``i`` holds one event)."""
    plans = []
    for ytid, is_single in zip(ytids, single):
        count = 1 if is_single else int(rng.choice([2, 3], p=[0.6, 0.4]))
        events = []
        for mid in picker.classes(count):
            recording = picker.recording(mid)
            onsets = place(rng, len(recording.waveform), clip_length, is_single)
            level = 0.0 if is_single else float(rng.uniform(-LEVEL_SPREAD_DB, LEVEL_SPREAD_DB))
            gains = tuple(level - (float(rng.uniform(0.0, REPEAT_JITTER_DB)) if copy else 0.0) for copy in range(len(onsets)))
            events.append(Event(recording, onsets, gains))
        if len(events) < count:
            raise ValueError(f"clip {ytid}: only {len(events)} classes unrelated in the ontology, {count} needed")
        plans.append(ClipPlan(ytid, 10.0 * int(rng.integers(0, 31)), tuple(events), float(rng.uniform(0.3, 0.9))))
    return plans


def render(plan: ClipPlan, clip_length: int) -> np.ndarray:
    """The clip's per-event tracks as int16 rows; their sum is the clip (no float round trip, so the
    references sum exactly to the mixture, as in the demo corpus)."""
    tracks = np.zeros((len(plan.events), clip_length))
    for row, event in enumerate(plan.events):
        waveform = event.recording.waveform
        unit = waveform / active_rms(waveform, SAMPLING_RATE)
        for onset, gain_db in zip(event.onsets, event.gains_db):
            tracks[row, onset : onset + len(waveform)] += unit * 10 ** (gain_db / 20)
    peak = max(np.abs(tracks.sum(axis=0)).max(), np.abs(tracks).max())
    return np.round(tracks * (plan.peak * 32767 / peak)).astype(np.int16)


def recording_rows(recordings: Sequence[Recording], split: str, ontology: Ontology) -> list[tuple]:
    return [
        (r.recording_id, r.package, r.member, r.group, r.licence, r.mid, ontology.name(r.mid), split, f"{r.seconds:.3f}")
        for r in recordings
    ]


def events_per_class(plans: Sequence[ClipPlan], ontology: Ontology) -> dict[str, int]:
    return dict(sorted(Counter(ontology.name(mid) for plan in plans for mid in plan.labels).items()))


def write_corpus(
    out: Path,
    train: Sequence[Recording],
    held_out: Sequence[Recording],
    ontology_file: Path,
    *,
    clips: int = 300,
    eval_clips: int = 60,
    valid_clips: int = 0,
    single_event_fraction: float = SINGLE_EVENT_FRACTION,
    seed: int = 0,
    overwrite: bool = False,
    about: dict | None = None,
) -> dict:
    """Mix ``train`` recordings into ``clips`` training clips and ``held_out`` ones into ``eval_clips`` eval clips
    (and ``valid_clips`` validation clips: other mixtures of the same held-out recordings, drawn from a separate
    random stream so that the other splits do not depend on it; for choosing checkpoints, not for reporting).

    Writes the demo corpus's layout (segments CSVs, ``class_labels_indices.csv`` of the classes used, a copy of
    ``ontology_file``, ``audio/{YTID}.flac``, ``references/`` of every multi-event clip), plus ``recordings.csv``
    and ``corpus.json`` (with ``about`` merged in). Recordings are mono float at :data:`SAMPLING_RATE`, at most
    :data:`CLIP_SECONDS` long. Returns the clip counts and events per class. Deterministic for ``seed``.
    """
    ontology = Ontology.from_json(ontology_file)
    clip_length = int(round(CLIP_SECONDS * SAMPLING_RATE))
    if not train or ((eval_clips or valid_clips) and not held_out):
        raise ValueError("no recordings to mix")
    if any(len(recording.waveform) > clip_length for recording in [*train, *held_out]):
        raise ValueError(f"recordings must be at most {CLIP_SECONDS} s long")
    out = Path(out)
    prepare_folder(out, overwrite, SETTINGS, (*OUTPUTS, VALID_SEGMENTS, RECORDINGS), kind="real-sound corpus")
    rng = np.random.default_rng(seed)
    ytids = youtube_like_ids(rng, clips + eval_clips)
    n_single = int(round(single_event_fraction * clips))
    single = rng.permutation([True] * n_single + [False] * (clips - n_single))
    train_plans = plan_clips(Picker(train, ontology, rng), rng, ytids[:clips], single, clip_length)
    eval_plans = plan_clips(Picker(held_out, ontology, rng), rng, ytids[clips:], [False] * eval_clips, clip_length)
    valid_rng = np.random.default_rng([seed, 2])
    valid_ytids = youtube_like_ids(valid_rng, valid_clips)
    if set(valid_ytids) & set(ytids):
        raise ValueError(f"seed {seed}: a validation clip id repeats a training or eval clip id; use another seed")
    valid_plans = plan_clips(Picker(held_out, ontology, valid_rng), valid_rng, valid_ytids, [False] * valid_clips, clip_length)

    (out / "audio").mkdir(parents=True, exist_ok=True)
    manifest = [
        row
        for plan in [*train_plans, *eval_plans, *valid_plans]
        for row in write_clip(out, plan.ytid, render(plan, clip_length), plan.labels, SAMPLING_RATE)
    ]
    creator = f"benchmarks/realsound.py (version {VERSION}, seed {seed})"
    splits = {TRAIN_SEGMENTS: train_plans, EVAL_SEGMENTS: eval_plans, **({VALID_SEGMENTS: valid_plans} if valid_clips else {})}
    for path, plans in splits.items():
        rows = [(plan.ytid, plan.start_seconds, plan.start_seconds + CLIP_SECONDS, plan.labels) for plan in plans]
        write_segments(out / path, rows, creator)
    used = {recording.mid for recording in [*train, *held_out]}
    vocabulary = [(index, mid, ontology.name(mid)) for index, mid in enumerate(mid for mid in ontology.nodes if mid in used)]
    write_csv(out / CLASS_LABELS, ("index", "mid", "display_name"), vocabulary)
    write_csv(out / MANIFEST, ("ytid", "label", "path"), manifest)
    shutil.copyfile(ontology_file, out / ONTOLOGY)
    rows = recording_rows(train, "train", ontology) + recording_rows(held_out, "eval", ontology)
    write_csv(out / RECORDINGS, RECORDING_FIELDS, rows)
    summary = {
        "train_clips": clips,
        "single_event_clips": n_single,
        "multi_event_clips": clips - n_single,
        "eval_clips": eval_clips,
        "valid_clips": valid_clips,
        "reference_files": len(manifest),
        "train_events_per_class": events_per_class(train_plans, ontology),
        "eval_events_per_class": events_per_class(eval_plans, ontology),
    }
    write_json(out / SETTINGS, {
        "generator": "benchmarks/realsound.py",
        "version": VERSION,
        "seed": seed,
        "clips": clips,
        "eval_clips": eval_clips,
        "single_event_fraction": single_event_fraction,
        "sampling_rate": SAMPLING_RATE,
        "seconds": CLIP_SECONDS,
        "level_spread_db": LEVEL_SPREAD_DB,
        "classes": [{"mid": mid, "name": name} for _, mid, name in vocabulary],
        "splits": {"train": TRAIN_SEGMENTS, "eval": EVAL_SEGMENTS, **({"valid": VALID_SEGMENTS} if valid_clips else {})},
        "recordings": RECORDINGS,
        **summary,
        **(about or {}),
    })
    return summary


# --------------------------------------------------------------------------- main


def gather(cache: Path, ontology: Ontology, timings: dict) -> tuple[list[Recording], list[PackageReport]]:
    """Every labelled recording of :data:`PACKAGES`, and what each package gave."""
    with phase("download (cached .deb files are reused)", timings):
        debs = {package: fetch_deb(package, cache) for package in PACKAGES}
    inventory = Inventory(ontology)
    reports = []
    for package, deb in debs.items():
        with phase(f"read {package}", timings):
            if package == SOUNDFONT_PACKAGE:
                reports.append(render_soundfont(deb, cache, inventory))
            else:
                reports.append(scan_package(package, deb, inventory))
    return inventory.recordings, reports


def class_table(
    recordings: Sequence[Recording], split: dict[str, str], held_out: dict[str, tuple[str, list[str]]], ontology: Ontology
) -> list[dict]:
    """Per class: recordings and seconds per split, packages, licences, and what eval holds out."""
    rows = []
    for mid, (level, units) in held_out.items():
        members = [recording for recording in recordings if recording.mid == mid]
        count = Counter(split[recording.recording_id] for recording in members)
        seconds = Counter()
        for recording in members:
            seconds[split[recording.recording_id]] += recording.seconds
        rows.append({
            "name": ontology.name(mid),
            "mid": mid,
            "recordings": {"train": count["train"], "eval": count["eval"]},
            "seconds": {key: round(value, 1) for key, value in sorted(seconds.items())},
            "packages": dict(sorted(Counter(recording.package for recording in members).items())),
            "licences": dict(sorted(Counter(recording.licence for recording in members).items())),
            "held_out": {"level": level, "units": units if level != "recording" else len(units)},
        })
    return sorted(rows, key=lambda row: row["name"])


def package_licences(recordings: Sequence[Recording], reports: Sequence[PackageReport]) -> list[dict]:
    """Per package: its version, the licences of its recordings in the corpus (dropped classes not counted), and
    why it gave nothing where it did not."""
    licences: dict[str, Counter] = defaultdict(Counter)
    for recording in recordings:
        licences[recording.package][recording.licence] += 1
    return [
        {
            "package": report.package,
            "version": report.version,
            "licences": dict(sorted(licences[report.package].items())),
            **({"note": report.note} if report.note else {}),
        }
        for report in reports
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="Folder of the corpus (must be empty unless --overwrite).")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "clearsep" / "realsound", help="Where .deb files are kept."
    )
    parser.add_argument("--audioset", type=Path, default=audioset.FOLDER,
                        help="Folder with AudioSet's ontology.json (CC BY-SA 4.0), copied into the corpus "
                        "(default: the copy shipped with clearsep-data).")
    parser.add_argument("--clips", type=int, default=300, help="Training clips.")
    parser.add_argument("--eval-clips", type=int, default=60, help="Held-out multi-event clips with references.")
    parser.add_argument("--valid-clips", type=int, default=0,
                        help="Validation clips (valid_segments.csv): other mixtures of the held-out recordings, for choosing checkpoints.")
    parser.add_argument("--single-event-fraction", type=float, default=SINGLE_EVENT_FRACTION)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="Replace a corpus already in --output.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    report = {"benchmark": "realsound", "version": VERSION, "settings": {key: str(value) for key, value in vars(args).items()},
              "machine": machine()}
    ontology_file = args.audioset / ONTOLOGY
    ontology = Ontology.from_json(ontology_file)
    recordings, packages = gather(args.cache, ontology, timings)
    recordings, dropped = keep_classes(recordings, ontology)
    split, held_out = split_recordings(recordings, np.random.default_rng([args.seed, 1]))
    classes = class_table(recordings, split, held_out, ontology)
    about = {
        "packages": package_licences(recordings, packages),
        "class_recordings": classes,
        "dropped_classes": dropped,
        "ontology_licence": "ontology.json: AudioSet ontology by Google, CC BY-SA 4.0 (https://github.com/audioset/ontology)",
    }
    with phase("mix and write the corpus", timings):
        clips = write_corpus(
            args.output,
            [recording for recording in recordings if split[recording.recording_id] == "train"],
            [recording for recording in recordings if split[recording.recording_id] == "eval"],
            ontology_file,
            clips=args.clips,
            eval_clips=args.eval_clips,
            valid_clips=args.valid_clips,
            single_event_fraction=args.single_event_fraction,
            seed=args.seed,
            overwrite=args.overwrite,
            about=about,
        )
    report.update({
        "classes": classes,
        "dropped_classes": dropped,
        "recordings": {split: sum(row["recordings"][split] for row in classes) for split in ("train", "eval")},
        "packages": [p.to_json() for p in packages],
        "unmatched": {p.package: p.unmatched for p in packages},
        "clips": clips,
        "timings": timings,
    })
    finish(report, started)


if __name__ == "__main__":
    main()
