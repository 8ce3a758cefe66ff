"""AudioSet's ontology and class list shipped as package data: ``"audioset"`` names them, folders fall back to them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clearsep_data import audioset
from clearsep_data.corpus import open_corpus
from clearsep_data.errors import CorpusError
from clearsep_data.label_space import load_label_space
from clearsep_data.ontology import Ontology

REPO = Path(__file__).resolve().parents[1]
SHARED_AUDIOSET = REPO.parent / "shared" / "audioset"
"""CI keeps the shared inputs beside the checkout (``../shared``); the shipped copies must equal them."""
SPEECH, BARK = "/m/09x0r", "/m/05tny_"
HEADER = "# Segments csv created by a test\n# num_ytids=1\n# YTID, start_seconds, end_seconds, positive_labels\n"


def audioset_folder(root: Path, labels: str = f"{BARK},{SPEECH}") -> Path:
    """An AudioSet-style folder with one segment and no ontology.json or class_labels_indices.csv."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "balanced_train_segments.csv").write_text(HEADER + f'abcdefghijA, 0.000, 1.000, "{labels}"\n', encoding="utf-8")
    sf.write(root / "abcdefghijA.flac", np.full(16000, 0.1, np.float32), 16000)
    return root


def test_the_shipped_files_are_audiosets_527_classes_and_632_nodes():
    ontology = Ontology.from_json(audioset.ONTOLOGY_PATH)
    with open(audioset.CLASS_LABELS_PATH, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(ontology.nodes) == 632 and len(rows) == 527
    assert (rows[0]["mid"], rows[0]["display_name"]) == (SPEECH, "Speech")
    assert all(ontology.name(row["mid"]) == row["display_name"] for row in rows)
    licence = (audioset.FOLDER / "LICENSE").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in licence and "Google" in licence


@pytest.mark.skipif(not SHARED_AUDIOSET.is_dir(), reason=f"{SHARED_AUDIOSET} is absent")
def test_the_shipped_files_equal_the_shared_ones():
    for name in ("ontology.json", "class_labels_indices.csv"):
        assert (audioset.FOLDER / name).read_bytes() == (SHARED_AUDIOSET / name).read_bytes(), name


def test_a_folder_without_label_files_opens_with_the_shipped_527_classes(tmp_path, capsys):
    root = audioset_folder(tmp_path / "corpus")
    corpus = open_corpus(str(root))
    assert len(corpus.vocabulary) == 527 and corpus.vocabulary[0] == SPEECH and len(corpus.ontology.nodes) == 632
    assert corpus.shipped_label_files == ("ontology.json", "class_labels_indices.csv")
    assert "shipped_label_files=('ontology.json', 'class_labels_indices.csv')" in repr(corpus)
    (clip,) = list(corpus)
    assert clip.labels == (BARK, SPEECH)
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and f"{root} has no ontology.json or class_labels_indices.csv" in note
    assert "shipped with clearsep-data (527 classes" in note and "CC BY-SA 4.0" in note
    open_corpus(str(root))
    assert capsys.readouterr().err == ""  # said once per process

    # A folder's own class list wins; only the ontology falls back.
    (root / "class_labels_indices.csv").write_text("index,mid,display_name\n0,/m/05tny_,Bark\n1,/m/09x0r,Speech\n")
    corpus = open_corpus(str(root))
    assert corpus.vocabulary == [BARK, SPEECH] and corpus.shipped_label_files == ("ontology.json",)
    assert f"{root} has no ontology.json: using the AudioSet ontology.json shipped" in capsys.readouterr().err


def test_ontology_audioset_names_the_shipped_files(tmp_path, capsys):
    root = audioset_folder(tmp_path / "corpus")
    corpus = open_corpus(str(root), ontology="audioset")
    assert len(corpus.vocabulary) == 527 and corpus.shipped_label_files == ("ontology.json", "class_labels_indices.csv")
    assert capsys.readouterr().err == ""  # asked for, so nothing to point out
    ontology, vocabulary = load_label_space(None, "audioset")
    assert len(ontology.nodes) == 632 and vocabulary == corpus.vocabulary
    with pytest.raises(CorpusError, match="ontology file not found"):
        load_label_space(None, str(tmp_path / "audioset.json"))


def test_a_folders_own_ontology_without_a_class_list_still_asks_for_one(tmp_path):
    """The shipped class list is no fallback for a folder's own (non-AudioSet) ontology it does not fit."""
    from clearsep_data.demo_corpus import demo_ontology
    from clearsep_data.corpus_writer import write_json

    root = audioset_folder(tmp_path / "corpus")
    write_json(root / "ontology.json", demo_ontology().to_entries())
    with pytest.raises(CorpusError, match="no class_labels_indices.csv in .*corpus: place AudioSet's class_labels_indices.csv"):
        open_corpus(str(root))


def test_training_accepts_audioset_for_ontology_and_vocabulary():
    from clearsep_data.training.arguments import TrainingArguments
    from clearsep_data.training.model_setup import _read_vocabulary
    from clearsep_data.training.trainer import _load_ontology

    ontology = _load_ontology(TrainingArguments(datasets=["x"], output_dir="y", ontology="audioset"), None)
    assert len(ontology.nodes) == 632
    mids, names = _read_vocabulary("audioset", None)  # the class list brings its ontology along
    assert len(mids) == 527 and (mids[0], names[0]) == (SPEECH, "Speech")
