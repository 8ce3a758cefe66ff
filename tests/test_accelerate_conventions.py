"""Training follows accelerate's conventions: mixed precision from the launcher, trackers through
``Accelerator(log_with=...)``, and gradients laid out as DDP's buckets expect."""

from __future__ import annotations

import json

import pytest

from test_training import arguments, data  # noqa: F401  (the module's track dataset fixture)


def test_launcher_mixed_precision_and_a_tensorboard_tracker(data, tmp_path, monkeypatch):  # noqa: F811
    """``accelerate launch --mixed_precision bf16`` (or its config) reaches the run as ACCELERATE_MIXED_PRECISION;
    ``report_to`` logs the metrics.jsonl values to TensorBoard under OUTPUT/runs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from clearsep_data.training import train

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    output = tmp_path / "run"
    train(arguments(data, output, steps=2, report_to=["tensorboard"]))
    saved = json.loads((output / "training_args.json").read_text())
    assert saved["bf16"] is False and saved["provenance"]["mixed_precision"] == "bf16"
    assert saved["report_to"] == ["tensorboard"]
    events = EventAccumulator(str(next((output / "runs").rglob("events.out.tfevents.*")).parent)).Reload()
    losses = [event.value for event in events.Scalars("loss")]
    logged = [record["loss"] for record in map(json.loads, (output / "metrics.jsonl").read_text().splitlines())]
    assert losses == pytest.approx(logged) and len(losses) == 2


def test_an_unknown_tracker_is_refused_before_training(tmp_path):
    from clearsep_data.training import TrainingArguments, TrainingError

    with pytest.raises(TrainingError, match="report_to: tensorbored is not one of accelerate's trackers"):
        TrainingArguments(datasets=["tracks"], output_dir=str(tmp_path), report_to=["tensorbored"]).validate()


def test_gradients_get_their_parameters_strides_as_ddp_buckets_expect():
    """The cause of DDP's "Grad strides do not match bucket view strides": weight gradients of convolutions with a
    size-1 dimension (1x1 kernels, one input channel) come back with other strides for those dimensions."""
    import torch

    from clearsep_data.modeling import ClearSepConfig, ClearSepModel
    from clearsep_data.training.trainer import match_gradient_layout

    def mismatched(hooked: bool) -> list[str]:
        torch.manual_seed(0)
        config = ClearSepConfig.from_preset("small", label_mids=["/m/09x0r", "/m/05tny_"], id2label={0: "Speech", 1: "Bark"})
        model = ClearSepModel(config)
        if hooked:
            match_gradient_layout(model)
        model(input_values=torch.randn(1, 16000), query_ids=torch.tensor([[0, 1]]), target_values=torch.randn(1, 2, 16000)).loss.backward()
        return [name for name, parameter in model.named_parameters() if parameter.grad.stride() != parameter.stride()]

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the multi-threaded backward is the one that lays gradients out so (one thread does not)
    try:
        assert mismatched(hooked=False)  # e.g. a skip convolution (32, 32, 1, 1): strides (32, 1, 32, 32), not (32, 1, 1, 1)
        assert mismatched(hooked=True) == []
    finally:
        torch.set_num_threads(threads)
