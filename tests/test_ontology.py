"""The ontology on a real AudioSet sub-tree: hierarchy, exclusive labels, query selection, subsets."""

from __future__ import annotations

import json

import pytest

from clearsep_data.ontology import Ontology, OntologyError

# A sub-tree of AudioSet's ontology.json (real MIDs, names and parent/child links), in the file's format.
AUDIOSET_SUBTREE = [
    ("/m/0dgw9r", "Human sounds", ["/m/09l8g"]),
    ("/m/09l8g", "Human voice", ["/m/09x0r"]),
    ("/m/09x0r", "Speech", []),
    ("/m/0jbk", "Animal", ["/m/068hy", "/m/01280g"]),
    ("/m/068hy", "Domestic animals, pets", ["/m/0bt9lr"]),
    ("/m/0bt9lr", "Dog", ["/m/05tny_"]),
    ("/m/05tny_", "Bark", []),
    ("/m/01280g", "Wild animals", ["/m/015p6"]),
    ("/m/015p6", "Bird", ["/m/020bb7"]),
    ("/m/020bb7", "Bird vocalization, bird call, bird song", ["/m/07pggtn"]),
    ("/m/07pggtn", "Chirp, tweet", []),
    ("/t/dd00041", "Sounds of things", ["/m/07pp_mv", "/m/02mk9", "/m/0395lw", "/t/dd00077"]),
    ("/m/07pp_mv", "Alarm", ["/m/03kmc9"]),
    ("/m/03kmc9", "Siren", []),
    ("/m/02mk9", "Engine", []),
    ("/m/0395lw", "Bell", []),
    ("/t/dd00077", "Mechanisms", ["/m/01x3z"]),
    ("/m/01x3z", "Clock", ["/m/07qjznl"]),
    ("/m/07qjznl", "Tick-tock", []),
    ("/m/059j3w", "Natural sounds", ["/m/06mb1"]),
    ("/m/06mb1", "Rain", []),
    ("/m/04rlf", "Music", ["/m/04szw"]),
    ("/m/04szw", "Musical instrument", ["/m/05148p4"]),
    ("/m/05148p4", "Keyboard (musical)", ["/m/05r5c"]),
    ("/m/05r5c", "Piano", []),
]
ABSTRACT = {"/m/0dgw9r", "/t/dd00041", "/m/059j3w"}

SPEECH, HUMAN_VOICE, HUMAN_SOUNDS = "/m/09x0r", "/m/09l8g", "/m/0dgw9r"
BARK, DOG, DOMESTIC, ANIMAL = "/m/05tny_", "/m/0bt9lr", "/m/068hy", "/m/0jbk"
CHIRP, BIRD_VOCALIZATION, BIRD, WILD = "/m/07pggtn", "/m/020bb7", "/m/015p6", "/m/01280g"
SIREN, ALARM, THINGS, ENGINE, BELL = "/m/03kmc9", "/m/07pp_mv", "/t/dd00041", "/m/02mk9", "/m/0395lw"
TICK_TOCK, CLOCK, MECHANISMS = "/m/07qjznl", "/m/01x3z", "/t/dd00077"
RAIN, NATURAL = "/m/06mb1", "/m/059j3w"
PIANO, KEYBOARD, INSTRUMENT, MUSIC = "/m/05r5c", "/m/05148p4", "/m/04szw", "/m/04rlf"


def ontology_entries() -> list[dict]:
    """The sub-tree as ``ontology.json`` entries (all of the real file's keys)."""
    return [
        {
            "id": mid,
            "name": name,
            "description": f"{name} (AudioSet class).",
            "citation_uri": "",
            "positive_examples": [],
            "child_ids": children,
            "restrictions": ["abstract"] if mid in ABSTRACT else [],
        }
        for mid, name, children in AUDIOSET_SUBTREE
    ]


def write_ontology(path) -> None:
    path.write_text(json.dumps(ontology_entries(), indent=1), encoding="utf-8")


@pytest.fixture(scope="module")
def ontology(tmp_path_factory) -> Ontology:
    path = tmp_path_factory.mktemp("ontology") / "ontology.json"
    write_ontology(path)
    return Ontology.from_json(path)


def test_reads_ontology_json_fields(ontology):
    assert len(ontology) == len(AUDIOSET_SUBTREE)
    assert ontology.name(CHIRP) == "Chirp, tweet"
    assert ontology.nodes[THINGS].restrictions == ("abstract",)
    assert ontology.nodes[SPEECH].description == "Speech (AudioSet class)."
    assert ontology.resolve("chirp, TWEET") == CHIRP and ontology.resolve(BARK) == BARK
    with pytest.raises(KeyError):
        ontology.resolve("Meow")


def test_parents_children_ancestors(ontology):
    assert ontology.parents(BARK) == (DOG,)
    assert ontology.parents(ANIMAL) == ()
    assert ontology.children(THINGS) == (ALARM, ENGINE, BELL, MECHANISMS)
    assert ontology.children(PIANO) == ()
    assert ontology.ancestors(SPEECH) == {HUMAN_VOICE, HUMAN_SOUNDS}
    assert ontology.ancestors(CHIRP) == {BIRD_VOCALIZATION, BIRD, WILD, ANIMAL}
    assert ontology.ancestors(TICK_TOCK) == {CLOCK, MECHANISMS, THINGS}
    assert ontology.descendants(ANIMAL) == {DOMESTIC, DOG, BARK, WILD, BIRD, BIRD_VOCALIZATION, CHIRP}
    assert ontology.descendants(RAIN) == set()


def test_ancestors_follow_every_parent_of_a_class_with_two():
    # The real ontology is a DAG; a class with two parents inherits both lines.
    entries = [
        {"id": "/x/root", "name": "Root", "child_ids": ["/x/a", "/x/b"]},
        {"id": "/x/a", "name": "A", "child_ids": ["/x/shared"]},
        {"id": "/x/b", "name": "B", "child_ids": ["/x/shared"]},
        {"id": "/x/shared", "name": "Shared"},
    ]
    dag = Ontology.from_entries(entries)
    assert dag.parents("/x/shared") == ("/x/a", "/x/b")
    assert dag.ancestors("/x/shared") == {"/x/a", "/x/b", "/x/root"}
    assert dag.exclusive(["/x/b", "/x/shared", "/x/a"]) == (["/x/shared"], ["/x/b", "/x/a"])


def test_exclusive_keeps_the_most_specific_labels_in_order(ontology):
    assert ontology.exclusive([DOG, BARK]) == ([BARK], [DOG])
    assert ontology.exclusive([BARK, DOG, ANIMAL]) == ([BARK], [DOG, ANIMAL])
    assert ontology.exclusive([MUSIC, PIANO, SPEECH]) == ([PIANO, SPEECH], [MUSIC])
    assert ontology.exclusive([SPEECH, PIANO, MUSIC]) == ([SPEECH, PIANO], [MUSIC])
    assert ontology.exclusive([SIREN, SIREN, ENGINE]) == ([SIREN, ENGINE], [])
    assert ontology.exclusive([]) == ([], [])


def test_select_queries_lifts_to_the_nearest_ancestor_in_vocabulary(ontology):
    vocabulary = [SPEECH, DOG, BIRD, ANIMAL, CLOCK, THINGS, MUSIC]
    selection = ontology.select_queries([BARK, CHIRP, SPEECH], vocabulary)
    assert selection.queries == (DOG, BIRD, SPEECH)
    assert selection.lifted == {BARK: DOG, CHIRP: BIRD}
    assert selection.out_of_vocabulary == () and selection.unknown == () and selection.redundant == ()

    # Breadth first: Tick-tock goes to Clock, not to Sounds of things further up.
    assert ontology.select_queries([TICK_TOCK], vocabulary).lifted == {TICK_TOCK: CLOCK}
    # Dog listed with Bark: Bark lifts onto Dog, which then counts once.
    assert ontology.select_queries([DOG, BARK], vocabulary).queries == (DOG,)
    # Music with Piano: Piano lifts to Music.
    assert ontology.select_queries([MUSIC, PIANO, SPEECH], vocabulary).queries == (MUSIC, SPEECH)


def test_select_queries_without_vocabulary_is_exclusive(ontology):
    selection = ontology.select_queries([DOG, BARK, RAIN])
    assert selection.queries == (BARK, RAIN)
    assert selection.redundant == (DOG,)
    assert selection.lifted == {}


def test_select_queries_reports_out_of_vocabulary_and_unknown(ontology):
    selection = ontology.select_queries([RAIN, SPEECH, "/m/notamid", RAIN], [SPEECH, MUSIC])
    assert selection.queries == (SPEECH,)
    assert selection.out_of_vocabulary == (RAIN,)
    assert selection.unknown == ("/m/notamid",)


def test_subset_keeps_ancestors_and_prunes_children(ontology):
    sub = ontology.subset([BARK, PIANO])
    assert set(sub.nodes) == {BARK, DOG, DOMESTIC, ANIMAL, PIANO, KEYBOARD, INSTRUMENT, MUSIC}
    assert sub.children(ANIMAL) == (DOMESTIC,)
    assert sub.nodes[ANIMAL].child_ids == (DOMESTIC,)
    assert sub.ancestors(BARK) == {DOG, DOMESTIC, ANIMAL}
    assert list(sub.nodes) == [ANIMAL, DOMESTIC, DOG, BARK, MUSIC, INSTRUMENT, KEYBOARD, PIANO]  # ontology order
    again = Ontology.from_entries(sub.to_entries())
    assert again.to_entries() == sub.to_entries()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{\"id\": \"/m/1\", ", "cannot read ontology"),
        ("{\"id\": \"/m/1\"}", "expected a JSON list"),
        ("[{\"name\": \"No id\"}]", "entry 0 lacks"),
        ("[{\"id\": \"/m/1\", \"name\": \"A\", \"child_ids\": \"/m/2\"}]", "'child_ids' must be a list"),
        ("[{\"id\": \"/m/1\", \"name\": \"A\"}, {\"id\": \"/m/1\", \"name\": \"B\"}]", "duplicate ontology id"),
    ],
)
def test_malformed_ontology_names_the_file(tmp_path, content, message):
    path = tmp_path / "ontology.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(OntologyError, match=message) as error:
        Ontology.from_json(path)
    assert str(path) in str(error.value)


def test_missing_ontology_file_names_the_file(tmp_path):
    with pytest.raises(OntologyError, match="missing.json"):
        Ontology.from_json(tmp_path / "missing.json")
