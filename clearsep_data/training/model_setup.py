"""The model a training run starts from: a new one over the data's vocabulary, or a pretrained one (``--init``)
extended to the labels of the data."""

from __future__ import annotations

from clearsep_data.training.arguments import TrainingArguments, TrainingError


def build_model(args: TrainingArguments, label_names: dict[str, str], ontology):
    """A new model for ``args.preset`` or the ``args.init`` model, its vocabulary covering ``label_names``."""
    from clearsep_data.modeling import ClearSepConfig, ClearSepLoadError, ClearSepModel

    if args.init is not None:
        try:
            model = ClearSepModel.from_pretrained(args.init)
        except (ClearSepLoadError, OSError) as error:
            raise TrainingError(f"--init {args.init}: cannot load a ClearSepModel ({str(error).splitlines()[0]})") from None
        new = {mid: name for mid, name in label_names.items() if mid not in model.config.label_mids}
        if new:
            model = extend_vocabulary(model, new, source=args.init)
        model.config.loss = args.loss  # this run's objective: the model's forward computes it, the config saves it
        return model
    if args.vocabulary is not None:
        mids, names = _read_vocabulary(args.vocabulary, ontology)
        missing = sorted(set(label_names) - set(mids))
        if missing:
            raise TrainingError(f"{args.vocabulary}: track label(s) missing from the vocabulary: {', '.join(missing)}")
    else:
        mids = sorted(label_names)
        names = [label_names[mid] for mid in mids]
    hierarchy = {} if ontology is None else {"ontology": model_ontology(ontology, mids)}
    overrides = {"loss": args.loss, "presence_head": True, **hierarchy, **args.model_config}
    try:
        config = ClearSepConfig.from_preset(args.preset, label_mids=mids, id2label=dict(enumerate(names)), **overrides)
    except (TypeError, ValueError) as error:
        raise TrainingError(f"model configuration: {error}") from None
    if args.clap_model is None:
        return ClearSepModel(config)
    try:
        return ClearSepModel.from_pretrained_clap(args.clap_model, config)
    except (OSError, ValueError) as error:
        raise TrainingError(f"--clap-model {args.clap_model}: cannot load a CLAP model ({str(error).splitlines()[0]})") from None


def model_ontology(ontology, mids: list[str]) -> list[dict]:
    """The ontology entries a model carries (``ClearSepConfig.ontology``): its labels and every class above them."""
    known = [mid for mid in mids if mid in ontology]
    entries = ontology.subset(known).to_entries()
    return [{"id": entry["id"], "name": entry["name"], "child_ids": entry["child_ids"]} for entry in entries]


def extend_vocabulary(model, labels: dict[str, str], source: str):
    """A copy of ``model`` whose vocabulary has ``labels`` (``{mid: name}``) appended.

    Every parameter and buffer is carried over; those with one row per label (the query embedding
    table) keep their old rows and get freshly initialised new ones.
    """
    from clearsep_data.modeling import ClearSepConfig, ClearSepModel

    if model.config.query_encoder != "embedding":
        raise TrainingError(
            f"--init {source}: the data holds labels outside the model's vocabulary ({', '.join(sorted(labels))}); "
            f"a {model.config.query_encoder!r} query encoder cannot be extended here, train with the model's labels"
        )
    old_size = model.config.num_labels
    config = ClearSepConfig.from_dict(
        {
            **model.config.to_dict(),
            "label_mids": [*model.config.label_mids, *labels],
            "id2label": {**model.config.id2label, **{old_size + i: name for i, name in enumerate(labels.values())}},
            "label2id": None,
        }
    )
    extended = ClearSepModel(config)
    state = extended.state_dict()
    for name, value in model.state_dict().items():
        if state[name].shape == value.shape:
            state[name] = value
        elif state[name].shape[1:] == value.shape[1:] and value.shape[0] == old_size:
            state[name][:old_size] = value
        else:
            raise TrainingError(f"--init {source}: cannot extend {name} {tuple(value.shape)} to the new vocabulary")
    extended.load_state_dict(state)
    return extended



def _read_vocabulary(path: str, ontology) -> tuple[list[str], list[str]]:
    from clearsep_data import audioset
    from clearsep_data.errors import CorpusError
    from clearsep_data.label_space import read_class_labels
    from clearsep_data.ontology import Ontology

    if ontology is None and audioset.is_shipped(path):
        ontology = Ontology.from_json(audioset.ONTOLOGY_PATH)  # AudioSet's class list comes with its ontology
    if ontology is None:
        raise TrainingError(
            f"--vocabulary {path} needs an ontology (--ontology ontology.json, --ontology {audioset.SHIPPED} or --natural-corpus)"
        )
    try:
        mids = read_class_labels(audioset.class_labels_file(path), ontology)
    except CorpusError as error:
        raise TrainingError(str(error)) from None
    return mids, [ontology.name(mid) for mid in mids]



__all__ = ["build_model", "extend_vocabulary"]
