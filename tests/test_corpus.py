"""Corpus readers on real-format snippets: AudioSet folders, Hugging Face datasets, bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
from test_ontology import (
    BARK,
    BIRD,
    CHIRP,
    DOG,
    MUSIC,
    PIANO,
    RAIN,
    SPEECH,
    ontology_entries,
    write_ontology,
)

from clearsep_data.audio import AudioError, resample
from clearsep_data.corpus import (
    SILENCE_PEAK_DBFS,
    AudioSetFolder,
    Clip,
    Skip,
    open_corpus,
    read_skips,
    write_skips,
)
from clearsep_data.errors import CorpusError
from clearsep_data.hf_corpus import HuggingFaceCorpus
from clearsep_data.ontology import OntologyError

SR = 16000
VOCABULARY = [SPEECH, DOG, BARK, BIRD, CHIRP, RAIN, MUSIC, PIANO]
COMMENT_HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=5, num_segs=5, num_unique_labels=4, num_positive_labels=7\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def tone(seconds: float, rate: int, channels: int, amplitude: float = 0.3) -> np.ndarray:
    """A (time, channels) test signal, each channel at its own pitch and level."""
    t = np.arange(int(round(seconds * rate))) / rate
    return np.stack(
        [amplitude / (c + 1) * np.sin(2 * np.pi * (330 + 110 * c) * t) for c in range(channels)], axis=1
    ).astype(np.float32)


def write_audio(path, seconds=1.0, rate=44100, channels=2, amplitude=0.3, **options) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    signal = tone(seconds, rate, channels, amplitude)
    sf.write(path, signal, rate, **options)
    return signal


def flac_bytes(seconds=1.0, rate=44100, channels=2) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, rate, channels), rate, format="FLAC")
    return buffer.getvalue()


def expected_mono(signal: np.ndarray, rate: int) -> np.ndarray:
    return resample(signal.mean(axis=1), rate, SR)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def write_label_files(folder, vocabulary=VOCABULARY) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_ontology(folder / "ontology.json")
    names = {entry["id"]: entry["name"] for entry in ontology_entries()}
    lines = ["index,mid,display_name"] + [f'{i},{mid},"{names[mid]}"' for i, mid in enumerate(vocabulary)]
    (folder / "class_labels_indices.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_segments(path, rows: str) -> None:
    path.write_text(COMMENT_HEADER + rows, encoding="utf-8")


def split_items(corpus) -> tuple[list[Clip], list[Skip]]:
    items = list(corpus)
    assert [item.index for item in items] == list(range(len(items)))
    return [i for i in items if isinstance(i, Clip)], [i for i in items if isinstance(i, Skip)]


# --------------------------------------------------------------------------- AudioSet folders


@pytest.fixture
def audioset_folder(tmp_path):
    root = tmp_path / "audioset"
    write_label_files(root)
    signals = {
        "--aE2O5G5WE": (write_audio(root / "audio" / "--aE2O5G5WE.flac", 1.0), 44100),
        "-0RWZT-miFs": (write_audio(root / "audio" / "Y-0RWZT-miFs.wav", 1.5, subtype="PCM_16"), 44100),
        "Zx_4-kLm9Qw": (write_audio(root / "Zx_4-kLm9Qw.ogg", 1.0, rate=22050, channels=3), 22050),
        "0aBcD_eF-gh": (write_audio(root / "audio" / "sub" / "Y0aBcD_eF-gh.mp3", 1.0, format="MP3"), 44100),
        "Yq9Wm1Rt5Uv": (write_audio(root / "audio" / "Yq9Wm1Rt5Uv.flac", 1.0, rate=48000, channels=1), 48000),
    }
    # A decoy: the exact YTID name wins over the Y-prefixed one, and audio/ over the folder itself.
    write_audio(root / "YYq9Wm1Rt5Uv.wav", 1.0)
    write_audio(root / "--aE2O5G5WE.wav", 1.0)
    write_segments(
        root / "balanced_train_segments.csv",
        '--aE2O5G5WE, 30.000, 31.000, "/m/0bt9lr,/m/05tny_"\n'
        "-0RWZT-miFs,  0.000,1.500,\"/m/09x0r\"\n"
        '\n'
        'Zx_4-kLm9Qw,   12.500, 13.500, " /m/06mb1 , /m/04rlf,/m/05r5c"\n'
        '0aBcD_eF-gh, 0.000, 1.000, "/m/07pggtn"\n'
        'Yq9Wm1Rt5Uv, 2.000, 3.000, "/m/05r5c,/m/05r5c"\n',
    )
    return root, signals


def test_audioset_folder_reads_the_published_format(audioset_folder):
    root, _ = audioset_folder
    corpus = open_corpus(str(root))
    assert isinstance(corpus, AudioSetFolder)
    assert corpus.name == "audioset"
    assert corpus.vocabulary == VOCABULARY
    assert corpus.ontology.name(CHIRP) == "Chirp, tweet"
    assert corpus.num_rows == 5
    clips, skips = split_items(corpus)
    assert skips == []
    assert [c.clip_id for c in clips] == ["--aE2O5G5WE", "-0RWZT-miFs", "Zx_4-kLm9Qw", "0aBcD_eF-gh", "Yq9Wm1Rt5Uv"]
    first = clips[0]
    assert (first.start_seconds, first.end_seconds, first.duration) == (30.0, 31.0, 1.0)
    assert first.labels == (DOG, BARK)
    assert first.where == "balanced_train_segments.csv:4"
    assert first.audio == str(root / "audio" / "--aE2O5G5WE.flac")
    assert clips[1].audio.endswith("audio/Y-0RWZT-miFs.wav") and clips[1].duration == 1.5
    assert clips[2].labels == (RAIN, MUSIC, PIANO) and clips[2].where == "balanced_train_segments.csv:7"
    assert clips[2].audio == str(root / "Zx_4-kLm9Qw.ogg")
    assert clips[3].audio.endswith("audio/sub/Y0aBcD_eF-gh.mp3")
    assert clips[4].audio == str(root / "audio" / "Yq9Wm1Rt5Uv.flac")
    assert clips[4].labels == (PIANO,)  # duplicates in a row count once
    assert list(corpus) == list(corpus)  # deterministic


def test_audioset_folder_decodes_any_format_to_mono_16k(audioset_folder):
    root, signals = audioset_folder
    corpus = open_corpus(str(root))
    for clip in corpus:
        waveform = corpus.load(clip, SR)
        assert waveform.dtype == np.float32 and waveform.ndim == 1
        assert waveform.shape == (round(clip.duration * SR),)
        signal, rate = signals[clip.clip_id]
        lossy = clip.audio.endswith((".ogg", ".mp3"))
        assert correlation(waveform, expected_mono(signal, rate)) > (0.95 if lossy else 0.999), clip.audio


def test_bad_rows_become_skips_in_order(tmp_path):
    root = tmp_path / "bad"
    write_label_files(root)
    for ytid in ("good_000001", "good_000002"):
        write_audio(root / "audio" / f"{ytid}.flac", 1.0, rate=SR, channels=1)
    write_segments(
        root / "balanced_train_segments.csv",
        'good_000001, 0.000, 1.000, "/m/09x0r"\n'  # line 4
        "badcols0001, 0.000, 1.000, /m/09x0r, /m/0bt9lr\n"
        "badcols0002, 0.000\n"
        'notnumber01, zero, 1.000, "/m/09x0r"\n'
        'notfinite01, 0.000, nan, "/m/09x0r"\n'
        'negative001, -1.000, 1.000, "/m/09x0r"\n'
        'inverted001, 2.000, 1.000, "/m/09x0r"\n'
        'emptylabels, 0.000, 1.000, ""\n'
        "\n"
        'unknownmid1, 0.000, 1.000, "/m/09x0r,/m/zzzzz"\n'  # line 13
        'missingaudi, 0.000, 1.000, "/m/09x0r"\n'
        'good_000001, 5.000, 6.000, "/m/09x0r"\n'
        'strayquote1, 0.000, 1.000, "/m/09x0r\n'  # an unclosed quote spoils its own line only
        'good_000002, 5.000, 6.000, "/m/0bt9lr, /m/05tny_"\n',
    )
    corpus = open_corpus(str(root))
    items = list(corpus)
    assert len(items) == corpus.num_rows == 13
    assert [type(item).__name__ for item in items] == ["Clip"] + ["Skip"] * 11 + ["Clip"]
    expected = [
        (5, "badcols0001", "expected 4 columns YTID, start_seconds, end_seconds, positive_labels, found 5 (is the label list quoted?)"),
        (6, "badcols0002", "found 2"),
        (7, "notnumber01", "start_seconds is not a number: 'zero'"),
        (8, "notfinite01", "end_seconds must be a finite, non-negative number"),
        (9, "negative001", "start_seconds must be a finite, non-negative number"),
        (10, "inverted001", "end_seconds (1) is not after start_seconds (2)"),
        (11, "emptylabels", "empty label list"),
        (13, "unknownmid1", "label(s) not in the ontology: /m/zzzzz"),
        (14, "missingaudi", "no audio file missingaudi.* or Ymissingaudi.*"),
        (15, "good_000001", "YTID already listed at balanced_train_segments.csv:4"),
        (16, "strayquote1", "no audio file strayquote1.*"),
    ]
    for skip, (line, clip_id, reason) in zip(items[1:-1], expected, strict=True):
        assert skip.where == f"balanced_train_segments.csv:{line}"
        assert skip.clip_id == clip_id
        assert reason in skip.reason, skip
    assert items[-1].labels == (DOG, BARK) and items[-1].where == "balanced_train_segments.csv:17"


def test_skip_list_round_trips_as_jsonl(tmp_path):
    skips = [Skip(3, "abc", "eval_segments.csv:7", "empty label list"), Skip(9, "é", "hf:x[train][9]", "a\nb")]
    path = tmp_path / "skips.jsonl"
    assert write_skips(path, skips) == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [skip.to_dict() for skip in skips]
    assert read_skips(path) == skips
    path.write_text(lines[0] + "\n{\"index\": 1}\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"skips.jsonl:2"):
        read_skips(path)


@pytest.fixture
def unusable_audio(tmp_path):
    """A folder whose rows point at corrupt, empty, truncated, short, silent and too quiet files."""
    root = tmp_path / "unusable"
    write_label_files(root)
    audio = root / "audio"
    write_audio(audio / "loud_000001.flac", 1.0, amplitude=0.05)  # about -26 dBFS: usable
    write_audio(audio / "short_00001.flac", 0.5)
    write_audio(audio / "silent_0001.wav", 1.0, amplitude=0.0)
    write_audio(audio / "quiet_00001.wav", 1.0, channels=1, amplitude=10 ** (-70 / 20), subtype="FLOAT")
    (audio / "corrupt_001.flac").write_bytes(b"fLaC" + b"\x00garbage" * 50)
    (audio / "empty_00001.wav").write_bytes(b"")
    whole = flac_bytes(1.0)
    (audio / "truncated01.flac").write_bytes(whole[: len(whole) // 2])
    ytids = ["loud_000001", "short_00001", "silent_0001", "quiet_00001", "corrupt_001", "empty_00001", "truncated01"]
    write_segments(root / "eval_segments.csv", "".join(f'{y}, 0.000, 1.000, "/m/09x0r"\n' for y in ytids))
    return root


@pytest.mark.parametrize(
    ("ytid", "reason"),
    [
        ("short_00001", r"shorter than its segment \(0.50 s decoded, 1.00 s expected\)"),
        ("silent_0001", r"silent \(peak digital silence, below -60 dBFS\)"),
        ("quiet_00001", r"silent \(peak -(69|70)\.\d dBFS, below -60 dBFS\)"),
        ("corrupt_001", r"cannot decode audio"),
        ("empty_00001", r"file is empty"),
        ("truncated01", r"cannot decode audio|shorter than its segment"),
    ],
)
def test_unusable_audio_raises_audio_error_naming_the_file(unusable_audio, ytid, reason):
    corpus = open_corpus(str(unusable_audio))
    clip = next(c for c in corpus if c.clip_id == ytid)
    with pytest.raises(AudioError, match=reason) as error:
        corpus.load(clip, SR)
    assert f"{ytid}." in str(error.value) and "eval_segments.csv:" in str(error.value)


def test_quiet_but_audible_clip_loads(unusable_audio):
    corpus = open_corpus(str(unusable_audio))
    clip = next(iter(corpus))
    assert clip.clip_id == "loud_000001"
    peak_db = 20 * np.log10(np.abs(corpus.load(clip, SR)).max())
    assert SILENCE_PEAK_DBFS < peak_db < -20


def test_segments_file_selection(tmp_path):
    root = tmp_path / "sets"
    write_label_files(root)
    write_audio(root / "audio" / "train_00001.flac", 1.0, rate=SR, channels=1)
    write_audio(root / "audio" / "eval_000001.flac", 1.0, rate=SR, channels=1)
    write_segments(root / "balanced_train_segments.csv", 'train_00001, 0.000, 1.000, "/m/09x0r"\n')
    write_segments(root / "eval_segments.csv", 'eval_000001, 0.000, 1.000, "/m/09x0r"\n')

    def ids(corpus):
        return [item.clip_id for item in corpus]

    assert ids(open_corpus(str(root))) == ["train_00001"]
    assert ids(open_corpus(str(root), segments="eval_segments.csv")) == ["eval_000001"]
    assert ids(open_corpus(str(root), split="eval")) == ["eval_000001"]
    assert ids(open_corpus(str(root / "eval_segments.csv"))) == ["eval_000001"]
    with pytest.raises(CorpusError, match=r"'nope.csv' not found .*eval_segments.csv"):
        open_corpus(str(root), segments="nope.csv")
    with pytest.raises(CorpusError, match="no test_segments.csv for split 'test'"):
        open_corpus(str(root), split="test")

    (root / "balanced_train_segments.csv").rename(root / "unbalanced_train_segments.csv")
    with pytest.raises(CorpusError, match="choose one with segments="):
        open_corpus(str(root))
    (root / "eval_segments.csv").unlink()
    assert ids(open_corpus(str(root))) == ["train_00001"]  # the only segments file


def test_ontology_override_and_label_file_errors(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    write_segments(root / "balanced_train_segments.csv", 'abcdefghijk, 0.000, 1.000, "/m/09x0r"\n')
    assert len(open_corpus(str(root)).vocabulary) == 527  # no label files: AudioSet's shipped ones (test_audioset_data.py)

    labels = tmp_path / "labels"
    write_label_files(labels)
    corpus = open_corpus(str(root), ontology=str(labels / "ontology.json"))  # class labels found next to it
    assert corpus.vocabulary == VOCABULARY
    with pytest.raises(CorpusError, match="missing.json: ontology file not found"):
        open_corpus(str(root), ontology=str(labels / "missing.json"))

    (labels / "ontology.json").write_text("[{\"id\": ", encoding="utf-8")
    with pytest.raises(OntologyError, match="ontology.json: cannot read ontology"):
        open_corpus(str(root), ontology=str(labels / "ontology.json"))

    write_ontology(root / "ontology.json")
    class_labels = root / "class_labels_indices.csv"
    cases = {
        "idx,mid,name\n0,/m/09x0r,Speech\n": r"class_labels_indices.csv:1: expected the header",
        "index,mid,display_name\n0,/m/09x0r,Speech\nx,/m/0bt9lr,Dog\n": r"class_labels_indices.csv:3: index 'x'",
        "index,mid,display_name\n0,/m/09x0r\n": r"class_labels_indices.csv:2: expected 3 columns",
        "index,mid,display_name\n0,/m/09x0r,Speech\n1,/m/zzz,Nope\n": r"class_labels_indices.csv:3: MID '/m/zzz' is not",
        "index,mid,display_name\n0,/m/09x0r,Speech\n0,/m/0bt9lr,Dog\n": r"class_labels_indices.csv:3: index 0 is listed twice",
        "index,mid,display_name\n": r"class_labels_indices.csv: no classes listed",
    }
    for content, message in cases.items():
        class_labels.write_text(content, encoding="utf-8")
        with pytest.raises(CorpusError, match=message):
            open_corpus(str(root))
    # Index order, not file order; quoted names with commas.
    class_labels.write_text('index,mid,display_name\n1,/m/07pggtn,"Chirp, tweet"\n0,/m/09x0r,"Speech"\n')
    assert open_corpus(str(root)).vocabulary == [SPEECH, CHIRP]


def test_open_corpus_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        open_corpus(str(tmp_path / "does" / "not" / "exist"))
    with pytest.raises(CorpusError, match="does not exist"):
        open_corpus("not a dataset id!")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CorpusError, match="expected a folder"):
        open_corpus(str(tmp_path / "notes.txt"))


# --------------------------------------------------------------------------- Hugging Face datasets


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


@pytest.fixture
def saved_dataset(tmp_path):
    """A ``save_to_disk`` folder: 44.1 kHz stereo FLAC bytes, labels as MIDs, names or a string, bad rows."""
    from datasets import Audio, Dataset, Features, Value

    rows = [
        ("vid00000001", [SPEECH], 0.0, 1.0, flac_bytes(1.0)),
        ("vid00000002", ["Dog", "bark"], 30.0, 31.0, flac_bytes(1.0)),
        ("vid00000003", ["Speech, Chirp, tweet, Rain"], 0.0, 1.0, flac_bytes(1.0)),
        ("vid00000004", ["/m/zzz", "Meow"], 0.0, 1.0, flac_bytes(1.0)),
        ("vid00000005", [], 0.0, 1.0, flac_bytes(1.0)),
        ("vid00000006", [PIANO], 4.0, 3.0, flac_bytes(1.0)),
        ("vid00000007", [BARK], 0.0, 1.0, b"not audio at all"),
    ]
    features = Features(
        {
            "audio": Audio(),
            "labels": [Value("string")],
            "ytid": Value("string"),
            "start_seconds": Value("float64"),
            "end_seconds": Value("float64"),
            "caption": Value("string"),
        }
    )
    dataset = Dataset.from_dict(
        {
            "audio": [{"bytes": payload, "path": None} for *_, payload in rows],
            "labels": [labels for _, labels, *_ in rows],
            "ytid": [ytid for ytid, *_ in rows],
            "start_seconds": [start for _, _, start, _, _ in rows],
            "end_seconds": [end for _, _, _, end, _ in rows],
            "caption": ["unused"] * len(rows),
        },
        features=features,
    )
    folder = tmp_path / "saved"
    dataset.save_to_disk(str(folder))
    write_label_files(folder)
    return folder


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_saved_dataset(saved_dataset, streaming):
    corpus = open_corpus(str(saved_dataset), streaming=streaming)
    assert isinstance(corpus, HuggingFaceCorpus) and corpus.vocabulary == VOCABULARY
    assert corpus.num_rows == (None if streaming else 7)
    clips, skips = split_items(corpus)
    assert [(c.clip_id, c.labels, c.start_seconds, c.end_seconds) for c in clips] == [
        ("vid00000001", (SPEECH,), 0.0, 1.0),
        ("vid00000002", (DOG, BARK), 30.0, 31.0),
        ("vid00000003", (SPEECH, CHIRP, RAIN), 0.0, 1.0),
        ("vid00000007", (BARK,), 0.0, 1.0),
    ]
    assert clips[1].where == "hf:saved[train][1]"
    assert all(isinstance(c.audio, bytes) for c in clips)
    assert [(s.index, s.clip_id, s.where) for s in skips] == [
        (3, "vid00000004", "hf:saved[train][3]"),
        (4, "vid00000005", "hf:saved[train][4]"),
        (5, "vid00000006", "hf:saved[train][5]"),
    ]
    assert skips[0].reason == "label(s) not in the ontology: /m/zzz, Meow"
    assert skips[1].reason == "empty label list"
    assert skips[2].reason == "end_seconds (3) is not after start_seconds (4)"

    waveform = corpus.load(clips[1], SR)
    assert waveform.shape == (SR,) and waveform.dtype == np.float32
    assert correlation(waveform, expected_mono(tone(1.0, 44100, 2), 44100)) > 0.999
    with pytest.raises(AudioError, match=r"hf:saved\[train\]\[6\]: cannot decode audio"):
        corpus.load(clips[3], SR)


def test_hf_parquet_with_class_label_indices_and_no_times(tmp_path, hf_cache):
    from datasets import Audio, ClassLabel, Dataset, Features

    names = ["Speech", "Bark", "Chirp, tweet"]
    dataset = Dataset.from_dict(
        {
            "audio": [{"bytes": flac_bytes(1.25, rate=24000, channels=1), "path": None}, {"bytes": b"junk", "path": None}],
            "tags": [[1, 0], [2]],
        },
        features=Features({"audio": Audio(), "tags": [ClassLabel(names=names)]}),
    )
    folder = tmp_path / "parquet"
    (folder / "data").mkdir(parents=True)
    dataset.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    write_label_files(folder)
    for streaming in (False, True):
        corpus = open_corpus(str(folder), labels_column="tags", streaming=streaming)
        clip, skip = list(corpus)
        assert (clip.clip_id, clip.labels, clip.start_seconds, clip.end_seconds) == ("train-000000", (BARK, SPEECH), 0.0, 1.25)
        assert corpus.load(clip, SR).shape == (20000,)
        assert skip.where == "hf:parquet[train][1]" and skip.reason.startswith("cannot measure the audio's duration")
    with pytest.raises(CorpusError, match=r"no column 'labels' \(columns: \['audio', 'tags'\]\)"):
        open_corpus(str(folder))
    with pytest.raises(CorpusError, match="no split 'test'|Unknown split"):
        open_corpus(str(folder), split="test", labels_column="tags")


def test_hf_audiofolder_with_path_audio_and_external_ontology(tmp_path, hf_cache):
    folder = tmp_path / "clips"
    signal = write_audio(folder / "train" / "a.wav", 1.0, rate=44100, channels=2)
    write_audio(folder / "train" / "b.ogg", 1.0, rate=44100, channels=1)
    (folder / "train" / "metadata.csv").write_text(
        'file_name,labels\na.wav,"Dog, Bark"\nb.ogg,"Bird vocalization, bird call, bird song,Speech"\n', encoding="utf-8"
    )
    with pytest.raises(CorpusError, match="no ontology.json in .*clips: pass ontology=PATH"):
        open_corpus(str(folder))
    labels = tmp_path / "labels"
    write_label_files(labels, [SPEECH, DOG, BARK, BIRD])
    corpus = open_corpus(str(folder), ontology=str(labels / "ontology.json"))
    clips = list(corpus)
    assert [c.labels for c in clips] == [(DOG, BARK), ("/m/020bb7", SPEECH)]
    assert clips[0].audio == str(folder / "train" / "a.wav")
    assert correlation(corpus.load(clips[0], SR), expected_mono(signal, 44100)) > 0.999


def test_hf_hub_dataset_with_label_files_in_the_repo(hub, tmp_path):
    from datasets import Audio, Dataset, Features, Value

    staged = tmp_path / "staged"
    (staged / "data").mkdir(parents=True)
    Dataset.from_dict(
        {
            "audio": [{"bytes": flac_bytes(1.0), "path": None}, {"bytes": flac_bytes(1.0), "path": None}],
            "labels": [["Chirp, tweet"], ["/m/zzz"]],
            "video_id": ["hubclip0001", "hubclip0002"],
        },
        features=Features({"audio": Audio(), "labels": [Value("string")], "video_id": Value("string")}),
    ).to_parquet(str(staged / "data" / "train-00000-of-00001.parquet"))
    write_label_files(staged)
    (staged / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n---\n",
        encoding="utf-8",
    )
    hub.publish(staged, "dataset", "clearsep/audioset-mini")
    for streaming in (False, True):
        corpus = open_corpus("clearsep/audioset-mini", streaming=streaming)
        assert corpus.name == "clearsep/audioset-mini" and corpus.vocabulary == VOCABULARY
        clip, skip = list(corpus)
        assert (clip.clip_id, clip.labels, clip.where) == ("hubclip0001", (CHIRP,), "hf:clearsep/audioset-mini[train][0]")
        assert corpus.load(clip, SR).shape == (SR,)
        assert (skip.clip_id, skip.reason) == ("hubclip0002", "label(s) not in the ontology: /m/zzz")

    (staged / "ontology.json").unlink()
    hub.publish(staged, "dataset", "clearsep/no-ontology")
    with pytest.raises(CorpusError, match="no ontology.json in the Hub dataset clearsep/no-ontology .*pass ontology=PATH"):
        open_corpus("clearsep/no-ontology")


def test_reads_the_demo_corpus(tmp_path):
    from clearsep_data.demo_corpus import generate_demo_corpus

    out = tmp_path / "demo"
    generate_demo_corpus(out, clips=4, eval_clips=2, seconds=1.0)
    for split, count in (("train", 4), ("eval", 2)):
        corpus = open_corpus(str(out), split=split)
        clips, skips = split_items(corpus)
        assert skips == [] and len(clips) == count
        for clip in clips:
            assert corpus.load(clip, SR).shape == (SR,)
            assert set(clip.labels) <= set(corpus.vocabulary) | set(corpus.ontology.nodes)


def test_hf_audio_column_option_and_a_column_that_is_not_audio(tmp_path):
    from datasets import Audio, Dataset, Features, Value

    folder = tmp_path / "renamed"
    Dataset.from_dict(
        {"wav": [{"bytes": flac_bytes(1.0), "path": None}], "classes": ["Bark"], "rating": [3]},
        features=Features({"wav": Audio(), "classes": Value("string"), "rating": Value("int64")}),
    ).save_to_disk(str(folder))
    write_label_files(folder)
    (clip,) = open_corpus(str(folder), audio_column="wav", labels_column="classes")
    assert clip.labels == (BARK,) and isinstance(clip.audio, bytes)
    with pytest.raises(CorpusError, match=r"column 'rating' \(Value\('int64'\)\) is not audio"):
        open_corpus(str(folder), audio_column="rating", labels_column="classes")
