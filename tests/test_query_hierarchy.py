"""The presence head (present_probability, the gate of separate()) and the label hierarchy a model carries
(ontology classes outside the vocabulary, parent embeddings built on their children's)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clearsep_data.modeling import ClearSepConfig, ClearSepLoadError, ClearSepModel
from clearsep_data.modeling.label_hierarchy import LabelHierarchy
from clearsep_data.modeling.losses import presence_loss
from clearsep_data.ontology import Ontology
from clearsep_data.training.model_setup import model_ontology
from test_modeling import RATE, TINY, waveform

pytestmark = pytest.mark.usefixtures("one_thread")

ONTOLOGY = [
    {"id": "/m/animal", "name": "Animal", "child_ids": ["/m/pets", "/m/015p6"]},
    {"id": "/m/pets", "name": "Domestic animals, pets", "child_ids": ["/m/0bt9lr"]},
    {"id": "/m/0bt9lr", "name": "Dog", "child_ids": ["/m/05tny_"]},
    {"id": "/m/05tny_", "name": "Bark", "child_ids": []},
    {"id": "/m/015p6", "name": "Bird", "child_ids": []},
    {"id": "/m/09x0r", "name": "Speech", "child_ids": []},
    {"id": "/m/vehicle", "name": "Vehicle", "child_ids": []},
]
LABELS = {"/m/09x0r": "Speech", "/m/05tny_": "Bark", "/m/0bt9lr": "Dog", "/m/015p6": "Bird"}


def hierarchy_model(seed: int = 0, **overrides) -> ClearSepModel:
    torch.manual_seed(seed)
    config = ClearSepConfig(
        label_mids=list(LABELS), id2label=dict(enumerate(LABELS.values())), ontology=ONTOLOGY, **{**TINY, **overrides}
    )
    return ClearSepModel(config).eval()


# --------------------------------------------------------------------------------------------- hierarchy
def test_nearest_vocabulary_labels_and_depth():
    hierarchy = LabelHierarchy(list(LABELS), list(LABELS.values()), ONTOLOGY)
    assert hierarchy.resolve("Animal") == [2, 3]  # Dog and Bird: Bark lies below Dog, so it is not counted twice
    assert hierarchy.resolve("domestic animals, pets") == [2]
    assert hierarchy.resolve("/m/0bt9lr") == [2] and hierarchy.resolve("bark") == [1]
    assert hierarchy.resolve("Vehicle") is None and hierarchy.resolve("Guitar") is None
    assert hierarchy.depth() == 1
    expected = torch.zeros(4, 4)
    expected[2, 1] = 1.0  # Dog -> Bark
    torch.testing.assert_close(hierarchy.composition(), expected)
    deeper = LabelHierarchy([*LABELS, "/m/animal"], [*LABELS.values(), "Animal"], ONTOLOGY)
    assert deeper.depth() == 2 and deeper.composition()[4, [2, 3]].tolist() == [0.5, 0.5]
    assert LabelHierarchy(list(LABELS), list(LABELS.values()), None).resolve("Animal") is None


def test_parent_embedding_starts_as_its_child_and_builds_on_it():
    model = hierarchy_model()
    table = model.query_encoder.label_table()
    torch.testing.assert_close(table[2], table[1], rtol=0, atol=0)  # Dog starts as Bark
    with torch.no_grad():
        model.query_encoder.embedding.weight[2] = 1.0
    table = model.query_encoder.label_table()
    torch.testing.assert_close(table[2], model.query_encoder.embedding.weight[1] + 1.0)
    plain = ClearSepModel(ClearSepConfig(label_mids=list(LABELS), id2label=dict(enumerate(LABELS.values())), **TINY))
    assert plain.query_encoder.depth == 0 and not torch.equal(plain.query_encoder.label_table()[2], plain.query_encoder.label_table()[1])


def test_ontology_class_outside_the_vocabulary_is_the_sum_of_its_nearest_labels(tmp_path):
    model = hierarchy_model()
    audio = waveform(1.5)
    np.testing.assert_allclose(model.separate(audio, ["Animal"])[0], model.separate(audio, ["Dog", "Bird"]).sum(0), atol=1e-6)
    np.testing.assert_array_equal(model.separate(audio, "Domestic animals, pets"), model.separate(audio, "Dog"))
    mixed = model.separate(audio, ["Speech", "Animal"], negative_queries=["Domestic animals, pets"], return_dict=True)
    assert mixed.separated_values.shape == (2, audio.size) and mixed.level_db.shape == (2,)
    labels = model.separate(audio, ["Speech", "Dog", "Bird"], negative_queries=["Dog"])  # the negative expands too
    np.testing.assert_allclose(mixed.separated_values, [labels[0], labels[1] + labels[2]], atol=1e-6)
    with pytest.raises(ValueError, match=r"unknown queries \['Vehicle'\].*or of a class above them"):
        model.separate(audio, ["Vehicle"])  # an ontology class with no vocabulary label below it
    model.save_pretrained(tmp_path)
    loaded = ClearSepModel.from_pretrained(tmp_path)
    assert loaded.config.ontology == ONTOLOGY
    np.testing.assert_array_equal(loaded.separate(audio, ["Animal"]), model.separate(audio, ["Animal"]))
    without = ClearSepModel(ClearSepConfig(label_mids=list(LABELS), id2label=dict(enumerate(LABELS.values())), **TINY))
    with pytest.raises(ValueError, match=r"unknown queries \['Animal'\]: not a display name or MID of this model's 4 labels \("):
        without.separate(audio, ["Animal"])


def test_training_models_carry_their_labels_ontology():
    ontology = Ontology.from_entries([{**entry, "description": "", "restrictions": []} for entry in ONTOLOGY])
    entries = model_ontology(ontology, ["/m/05tny_", "/m/09x0r"])
    assert {entry["id"] for entry in entries} == {"/m/05tny_", "/m/0bt9lr", "/m/pets", "/m/animal", "/m/09x0r"}
    assert next(entry for entry in entries if entry["id"] == "/m/animal")["child_ids"] == ["/m/pets"]


# --------------------------------------------------------------------------------------------- presence head
def test_presence_loss_is_class_balanced():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    present = torch.tensor([[True, True, False]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(logits[0, :2], torch.ones(2)) + bce(logits[0, 2:], torch.zeros(1))
    torch.testing.assert_close(presence_loss(logits, present), expected)
    padded = presence_loss(logits, present, weights=torch.tensor([[1.0, 0.0, 2.0]]))
    torch.testing.assert_close(padded, bce(logits[0, :1], torch.ones(1)) + bce(logits[0, 2:], torch.zeros(1)))


def test_presence_head_learns_absent_queries_without_touching_the_separator():
    model = hierarchy_model(presence_head=True).train()
    assert ClearSepConfig().presence_head is False and hierarchy_model().presence_head is None
    tone = 0.2 * torch.sin(2 * math.pi * 440 * torch.arange(RATE) / RATE)
    speech = torch.from_numpy(waveform(1.0, seed=1))
    mixture = torch.stack([speech + tone, speech])
    query_ids = torch.tensor([[0, 3], [0, 3]])  # Speech in both; "Bird" (the tone) only in the first
    targets = torch.stack([torch.stack([speech, tone]), torch.stack([speech, torch.zeros_like(tone)])])
    output = model(mixture, query_ids, target_values=targets)
    assert output.presence_logits.shape == (2, 2)
    head_only = presence_loss(output.presence_logits, torch.tensor([[True, True], [True, False]]))
    head_only.backward()
    assert all(p.grad is None for p in (*model.encoder.parameters(), *model.query_encoder.parameters()))
    assert model.presence_head.classifier.weight.grad.abs().sum() > 0
    optimiser = torch.optim.Adam(model.presence_head.parameters(), lr=1e-2)
    for _ in range(30):
        loss = model(mixture, query_ids, target_values=targets).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    present = model.separate(mixture[0].numpy(), ["Bird"], return_dict=True).present_probability
    absent = model.separate(mixture[1].numpy(), ["Bird"], return_dict=True).present_probability
    assert present.shape == (1,) and present[0] > 0.5 > absent[0]


def test_presence_gate_soft_hard_none_and_sets_of_labels():
    model = hierarchy_model(presence_head=True)
    audio = waveform(1.5)
    model.config.presence_gate = "none"
    ungated = model.separate(audio, ["Speech", "Dog", "Bird", "Animal"], return_dict=True)
    probability = ungated.present_probability
    assert probability.shape == (4,) and ((0 < probability) & (probability < 1)).all()
    np.testing.assert_allclose(probability[3], 1 - (1 - probability[1]) * (1 - probability[2]), rtol=1e-5)
    model.config.presence_gate = "soft"
    soft = model.separate(audio, ["Speech", "Dog", "Bird", "Animal"], return_dict=True)
    factor = np.minimum(2 * probability[:3], 1.0)  # untouched from p = 0.5 up, faded to zero below
    np.testing.assert_allclose(soft.separated_values[:3], ungated.separated_values[:3] * factor[:, None], atol=1e-6)
    np.testing.assert_allclose(soft.separated_values[3], soft.separated_values[1] + soft.separated_values[2], atol=1e-6)
    np.testing.assert_allclose(soft.level_db[:3], ungated.level_db[:3] + 20 * np.log10(factor), atol=1e-3)
    hard = model.separate(audio, ["Speech", "Dog", "Bird"], presence_gate="hard")  # this call's gate
    np.testing.assert_array_equal(hard, ungated.separated_values[:3] * (probability[:3, None] >= 0.5))
    with pytest.raises(ValueError, match="presence_gate must be one of"):
        model.separate(audio, ["Speech"], presence_gate="off")
    long = waveform(5.0)  # several chunks: the presence of a long input is the maximum over its chunks
    pieces = [model.separate(long[start : start + 2 * RATE], ["Speech"], return_dict=True) for start in (0, 2 * RATE)]
    whole = model.separate(long, ["Speech"], chunk_seconds=2.0, return_dict=True).present_probability
    assert whole[0] >= min(piece.present_probability[0] for piece in pieces)


def test_presence_targets_of_every_label_of_a_training_mixture():
    from clearsep_data.training.catalog import LabelRelations

    ontology = Ontology.from_entries([{**entry, "description": "", "restrictions": []} for entry in ONTOLOGY])
    relations = LabelRelations(list(LABELS), ontology)  # Speech, Bark, Dog, Bird
    assert relations.presence_row(["/m/05tny_"]).tolist() == [0, 1, 1, 0]  # Bark and the Dog above it
    assert relations.presence_row(["/m/0bt9lr", "/m/09x0r"]).tolist() == [1, -1, 1, 0]  # a Dog may or may not bark
    assert relations.presence_row(["/m/pets"]).tolist() == [0, -1, -1, 0]  # a label outside the vocabulary
    model = hierarchy_model(presence_head=True).train()
    mixture = torch.from_numpy(np.stack([waveform(1.0, seed=seed) for seed in range(2)]))
    targets = torch.stack([mixture, torch.zeros_like(mixture)], dim=1)
    query_ids = torch.tensor([[0, 3], [0, 3]])
    labels = torch.tensor([[1, 0, 0, 0], [1, -1, 1, 0]])
    output = model(mixture, query_ids, target_values=targets, presence_labels=labels)
    separation = model(mixture, query_ids, target_values=targets).loss - presence_loss(
        output.presence_logits, torch.tensor([[True, False], [True, False]])
    )
    with torch.no_grad():
        queries = model.query_encoder(torch.arange(4).expand(2, -1))
        all_logits = model.presence_head(model.presence_head.pool(model.encode(mixture).bottleneck, queries))
    expected = separation + presence_loss(all_logits, labels == 1, (labels >= 0).float())
    torch.testing.assert_close(output.loss, expected, rtol=1e-4, atol=1e-4)


def test_checkpoints_without_the_head_load_without_it(tmp_path):
    old = hierarchy_model()
    old.save_pretrained(tmp_path)
    loaded = ClearSepModel.from_pretrained(tmp_path)
    assert loaded.presence_head is None
    assert loaded.separate(waveform(1.0), ["Bark"], return_dict=True).present_probability is None
    config = ClearSepConfig.from_pretrained(tmp_path, presence_head=True)
    with pytest.raises(ClearSepLoadError, match="presence_head"):
        ClearSepModel.from_pretrained(tmp_path, config=config)
