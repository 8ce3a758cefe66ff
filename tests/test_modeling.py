"""ClearSepModel / ClearSepConfig: transformers plumbing, inference paths, losses and a few training steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from huggingface_hub.errors import StrictDataclassClassValidationError
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerFast

from clearsep_data import ClearSepConfig, ClearSepModel
from clearsep_data.metrics import sdr, si_sdr
from clearsep_data.modeling.losses import separation_loss
from clearsep_data.modeling.network_clearsep import _fold_frequency, _unfold_frequency

LABELS = {"/m/09x0r": "Speech", "/m/05tny_": "Bark", "/m/07pggtn": "Chirp, tweet"}
TINY = dict(
    sampling_rate=8000, n_fft=128, hop_length=40, channels=[4, 8, 8], encoder_blocks=[1, 2, 1], frequency_patch=2,
    skip_kernel_size=3, query_dim=8, segment_seconds=2.0,
)  # fmt: skip
RATE = TINY["sampling_rate"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**overrides) -> ClearSepConfig:
    return ClearSepConfig(label_mids=list(LABELS), id2label=dict(enumerate(LABELS.values())), **{**TINY, **overrides})


def tiny_model(seed: int = 0, **overrides) -> ClearSepModel:
    torch.manual_seed(seed)
    model = ClearSepModel(tiny_config(**overrides))
    # Random, non-trivial BatchNorm statistics so that eval-mode normalisation is exercised too.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def waveform(seconds: float, rate: int = RATE, seed: int = 0, channels: int | None = None) -> np.ndarray:
    """Noise bursts plus a chirp: broadband, non-stationary test audio."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * (200 + 300 * time % 1500) * time)
    signal = signal + 0.1 * rng.standard_normal(time.size) * (np.sin(2 * np.pi * 0.7 * time) > 0)
    if channels:
        signal = np.stack([signal * (0.5 + 0.5 * c) for c in range(channels)])
    return signal.astype(np.float32)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(sdr(torch.from_numpy(reference).double(), torch.from_numpy(estimate).double()).min())


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    words = ["<s>", "<pad>", "</s>", "<unk>", "speech", "bark", "chirp", ",", "tweet"]
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


TINY_CLAP = dict(
    vocab_size=9, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, projection_dim=8,
    max_position_embeddings=16,
)  # fmt: skip


# --------------------------------------------------------------------------------------------- configuration
def test_config_vocabulary_presets_and_errors():
    config = tiny_config()
    assert config.label2id == {"Speech": 0, "Bark": 1, "Chirp, tweet": 2}
    assert config.num_labels == 3 and config.label_mids == list(LABELS)
    small = ClearSepConfig.from_preset("small", label_mids=["/m/a"])
    assert (small.sampling_rate, small.n_fft, small.hop_length, small.frequency_patch) == (16000, 1024, 320, 8)
    assert small.to_dict() == ClearSepConfig(label_mids=["/m/a"]).to_dict()  # the defaults are the small preset
    assert small.id2label == {0: "/m/a"}  # MIDs double as names
    big = ClearSepConfig.from_preset("audiosep", query_dim=256)
    assert (big.sampling_rate, big.n_fft, big.hop_length, big.query_dim) == (32000, 1024, 320, 256)
    assert (big.frequency_patch, big.encoder_blocks, big.skip_kernel_size) == (1, [2] * 6, 3)
    medium = ClearSepConfig.from_preset("medium", label_mids=["/m/a"])  # small's front end, two levels deeper
    assert (medium.sampling_rate, medium.hop_length, medium.frame_quantum) == (16000, 320, 64) and len(medium.channels) == 6
    with pytest.raises(ValueError, match="unknown preset"):
        ClearSepConfig.from_preset("huge")
    with pytest.raises(StrictDataclassClassValidationError, match="label_mids has 1 entries"):
        ClearSepConfig(label_mids=["/m/a"], id2label={0: "A", 1: "B"})
    with pytest.raises(StrictDataclassClassValidationError, match="divisible"):
        ClearSepConfig(n_fft=64, channels=[4, 4, 4, 4, 4, 4], encoder_blocks=2, frequency_patch=1)
    with pytest.raises(StrictDataclassClassValidationError, match="frequency_patch"):
        ClearSepConfig(n_fft=256, hop_length=64, channels=[4, 4], encoder_blocks=1, frequency_patch=64)
    assert ClearSepConfig(channels=[8, 16, 32]).encoder_blocks == [1, 2, 2]  # the default follows the levels
    assert ClearSepConfig(channels=[8, 16], encoder_blocks=3).encoder_blocks == [3, 3]
    with pytest.raises(StrictDataclassClassValidationError, match="one per level"):
        ClearSepConfig(encoder_blocks=[1, 2])
    with pytest.raises(StrictDataclassClassValidationError, match="skip_kernel_size"):
        ClearSepConfig(skip_kernel_size=2)


def test_parameter_counts_of_presets():
    small = ClearSepModel(ClearSepConfig.from_preset("small", label_mids=list(LABELS)))
    assert 0.5e6 < small.num_parameters() < 2.0e6


def test_small_preset_compute_budget_and_query_cost():
    """The small preset is sized for CPU training: a forward pass over one 2 s mixture stays near 1 GFLOP, and a
    second query costs under half the first (the encoder, run once per mixture, carries most of the work)."""
    model = ClearSepModel(ClearSepConfig.from_preset("small", label_mids=list(LABELS))).eval()
    mixture = torch.from_numpy(waveform(2.0, rate=16000))[None]

    def gflop(num_queries: int) -> float:
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(mixture, torch.arange(num_queries)[None])
        return counter.get_total_flops() / 1e9

    one, two = gflop(1), gflop(2)
    assert one + (two - one) < 1.1  # the training step of 8 mixtures x 2 queries is 3 x 8 x this, ~23 GFLOP
    assert (two - one) / one < 0.5


def test_frequency_patches_unfold_to_bins():
    """The stem folds bins (f * patch + p) into channel p and the mask head's unfold is its exact inverse."""
    spectrogram = torch.arange(2 * 3 * 16, dtype=torch.float32).reshape(2, 1, 3, 16)  # (B, 1, N, F)
    folded = _fold_frequency(spectrogram, 4)
    assert folded.shape == (2, 4, 3, 4)
    assert folded[1, 3, 2, 1] == spectrogram[1, 0, 2, 1 * 4 + 3]
    torch.testing.assert_close(_unfold_frequency(folded), spectrogram[:, 0])
    torch.testing.assert_close(_unfold_frequency(folded[:, None]), spectrogram)  # with a query axis


# --------------------------------------------------------------------------------------------- save / load
def test_save_load_round_trip_and_auto_classes(tmp_path):
    model = tiny_model()
    mixture = torch.from_numpy(waveform(1.0))[None]
    query_ids = torch.tensor([[0, 2]])
    with torch.no_grad():
        expected = model(mixture, query_ids).separated_values
    model.save_pretrained(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert "model.safetensors" in files and "config.json" in files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]

    for loaded in (ClearSepModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert isinstance(loaded, ClearSepModel)
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(mixture, query_ids).separated_values, expected, rtol=0, atol=0)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, ClearSepConfig) and config.label2id == model.config.label2id


def test_from_pretrained_by_hub_id(hub, tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "model")
    commit = hub.publish(tmp_path / "model", "model", "clearsep/tiny-separator")
    loaded = AutoModel.from_pretrained("clearsep/tiny-separator", revision=commit).eval()
    audio = waveform(1.0)
    np.testing.assert_array_equal(loaded.separate(audio, ["Bark"]), model.separate(audio, ["Bark"]))


def test_clap_text_query_encoder_round_trip(tmp_path):
    model = tiny_model(query_encoder="clap_text", clap_text_config=TINY_CLAP)
    mixture = torch.from_numpy(waveform(1.0))[None]
    query_ids = torch.tensor([[1, 2]])
    with pytest.raises(RuntimeError, match="cache_label_embeddings"):
        model(mixture, query_ids)
    tokenizer = tiny_tokenizer()
    model.cache_label_embeddings(tokenizer)
    embeddings = model.query_encoder.label_embeddings
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(embeddings[0], embeddings[1])
    with torch.no_grad():
        expected = model(mixture, query_ids).separated_values

    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.clap_text_config.hidden_size == 16
    with torch.no_grad():  # cached embeddings come from the checkpoint: no tokenizer needed
        torch.testing.assert_close(loaded(mixture, query_ids).separated_values, expected, rtol=0, atol=0)
    loaded.cache_label_embeddings(AutoTokenizer.from_pretrained(tmp_path))
    torch.testing.assert_close(loaded.query_encoder.label_embeddings, embeddings)


# --------------------------------------------------------------------------------------------- inference
def test_chunked_inference_matches_whole_input():
    model = tiny_model()
    audio = waveform(30.3)  # 15 full chunks of 2 s and a partial one
    assert len(model.feature_extractor.chunk_plan(audio.size)) == 16
    chunked = model.separate(audio, ["Speech", "Bark"], batch_size=4)
    whole = model.separate(audio, ["Speech", "Bark"], chunk_seconds=60.0)
    assert len(model.feature_extractor.chunk_plan(audio.size, 60.0)) == 1
    assert chunked.shape == whole.shape == (2, audio.size)
    assert snr_db(whole, chunked) > 30.0


def test_shorter_context_still_close_and_seamless():
    model = tiny_model(chunk_context_seconds=0.2)
    audio = waveform(12.0)
    chunked = model.separate(audio, ["Speech"])
    whole = model.separate(audio, ["Speech"], chunk_seconds=60.0)
    assert np.isfinite(chunked).all() and snr_db(whole, chunked) > 30.0


def test_multi_query_and_multi_clip_batching_equal_one_by_one():
    model = tiny_model()
    first, second = waveform(3.0, seed=1), waveform(2.5, seed=2)
    together = model.separate(first, ["Speech", "Bark", "Chirp, tweet"])
    one_by_one = np.stack([model.separate(first, [name])[0] for name in ("Speech", "Bark", "Chirp, tweet")])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)

    batched = model.separate([first, second, first], [["Bark"], ["Speech", "Bark"], ["Chirp, tweet"]], batch_size=3)
    assert [output.shape for output in batched] == [(1, first.size), (2, second.size), (1, first.size)]
    np.testing.assert_allclose(batched[0], together[1:2], atol=1e-5)
    np.testing.assert_allclose(batched[1], model.separate(second, ["Speech", "Bark"]), atol=1e-5)
    np.testing.assert_allclose(batched[2], together[2:3], atol=1e-5)


def test_tensor_outputs_stay_on_the_model_device_and_equal_the_arrays():
    model = tiny_model()
    audio = waveform(5.0)  # 3 chunks, overlap-added on the model's device
    tensors = model.separate([audio, audio[:RATE]], [["Speech", "Bark"], ["Bark"]], return_tensors="pt")
    arrays = model.separate([audio, audio[:RATE]], [["Speech", "Bark"], ["Bark"]])
    for tensor, array in zip(tensors, arrays):
        assert torch.is_tensor(tensor) and tensor.device == model.device and tensor.dtype == torch.float32
        np.testing.assert_array_equal(tensor.cpu().numpy(), array)
    with pytest.raises(ValueError, match="model's sampling rate"):
        model.separate(audio, ["Speech"], sampling_rate=2 * RATE, return_tensors="pt")
    with pytest.raises(ValueError, match="'np' or 'pt'"):
        model.separate(audio, ["Speech"], return_tensors="tf")


def test_separate_any_rate_stereo_and_tensor_input():
    model = tiny_model()
    stereo = waveform(1.3, rate=44100, channels=2)
    output = model.separate(stereo, ["speech", "/m/05tny_"], sampling_rate=44100)
    assert output.shape == (2, stereo.shape[1]) and output.dtype == np.float32
    mono = model.separate(stereo.mean(axis=0), ["Speech", "Bark"], sampling_rate=44100)
    np.testing.assert_allclose(output, mono, atol=1e-6)
    from_tensor = model.separate(torch.from_numpy(stereo), "Speech", sampling_rate=44100)
    np.testing.assert_allclose(from_tensor, output[:1], atol=1e-6)
    with pytest.raises(ValueError, match="expected \\(channels, samples\\)"):
        model.separate(stereo.T, ["Speech"], sampling_rate=44100)
    with pytest.raises(ValueError, match="NaN"):
        model.separate(np.full(100, np.nan, dtype=np.float32), ["Speech"])


def test_feature_extractor_downmixes_resamples_and_pads():
    from clearsep_data.modeling import ClearSepFeatureExtractor
    from clearsep_data.modeling.feature_extraction_clearsep import resample

    extractor = ClearSepFeatureExtractor(sampling_rate=RATE)
    stereo, mono = waveform(1.3, rate=44100, channels=2), waveform(0.5)
    values = extractor([stereo, torch.from_numpy(mono)], sampling_rate=44100)["input_values"]
    assert [value.dtype for value in values] == [np.float32, np.float32] and all(v.flags.c_contiguous for v in values)
    np.testing.assert_array_equal(values[0], resample(stereo.mean(axis=0), 44100, RATE))
    assert values[1].shape == (round(mono.shape[0] * RATE / 44100),)
    assert extractor(mono)["input_values"][0].shape == mono.shape  # one waveform: a batch of one, at its rate
    padded = extractor([mono, mono[:100]], return_tensors="pt")["input_values"]
    assert padded.shape == (2, mono.shape[0]) and torch.equal(padded[1, 100:], torch.zeros(mono.shape[0] - 100))
    with pytest.raises(ValueError, match="audio #1 has shape"):
        extractor([mono, stereo.T])
    with pytest.raises(ValueError, match="audio #0 must be a non-empty"):
        extractor(np.zeros(0, np.float32))


def test_bf16_autocast_and_bf16_weights_run_close_to_float32():
    model = tiny_model()
    audio = waveform(2.0)
    reference = model.separate(audio, ["Speech"])
    low_precision = model.separate(audio, ["Speech"], use_bf16=True)
    assert low_precision.dtype == np.float32 and snr_db(reference, low_precision) > 15.0
    bf16_weights = model.to(torch.bfloat16).separate(audio, ["Speech"])  # e.g. from_pretrained(..., dtype=bf16)
    assert bf16_weights.dtype == np.float32 and snr_db(reference, bf16_weights) > 15.0


def test_folded_batch_norm_film_equals_norm_then_film():
    """At inference each decoder BatchNorm is folded into the FiLM after it; the result must not change."""
    block = tiny_model().decoder.blocks[0]
    hidden = torch.randn(2, 1, block.norm1.num_features, 4, 6)  # one mixture encoding, broadcast over queries
    queries = torch.randn(2, 3, TINY["query_dim"])
    with torch.no_grad():
        folded = block.film1(hidden, queries, block.norm1)
        reference = block.film1(block.norm1(hidden.flatten(0, 1)).unflatten(0, (2, 1)), queries)
    assert folded.shape == (2, 3, *hidden.shape[2:])
    torch.testing.assert_close(folded, reference)


def test_separate_restores_training_mode():
    model = tiny_model().train()
    model.separate(waveform(0.5), ["Bark"])
    assert model.training


def test_query_ids_by_name_or_mid_and_unknown_error():
    model = tiny_model()
    assert model.query_ids(["SPEECH", "/m/05tny_", "chirp, tweet"]).tolist() == [0, 1, 2]
    assert model.query_ids("Bark").tolist() == [1]
    with pytest.raises(ValueError, match=r"unknown queries \['Dog', '/m/0bt9lr'\]"):
        model.query_ids(["Speech", "Dog", "/m/0bt9lr"])


def test_forward_masks_and_shapes_and_input_errors():
    model = tiny_model()
    mixture = torch.randn(2, 4001)
    with torch.no_grad():
        output = model(mixture, torch.tensor([[0, 1], [2, 2]]))
    assert output.separated_values.shape == (2, 2, 4001)
    assert output.masks.shape == (2, 2, 65, 4001 // 40 + 1)
    assert float(output.masks.min()) >= 0.0 and float(output.masks.max()) <= 1.0
    assert output.loss is None
    with pytest.raises(ValueError, match="query_ids must be"):
        model(mixture, torch.tensor([0, 1]))


# --------------------------------------------------------------------------------------------- losses
def test_loss_of_a_perfect_estimate():
    target = torch.from_numpy(np.stack([waveform(0.5, seed=1), waveform(0.5, seed=2)]))[None]
    mixture = target.sum(1)
    expected = -(0.9 * sdr(target, target) + 0.1 * si_sdr(target, target)).mean()
    torch.testing.assert_close(separation_loss(target, target, mixture), expected)
    assert float(separation_loss(target, target, mixture, kind="l1")) == 0.0


def test_loss_of_silent_targets_penalises_output_energy():
    mixture = torch.from_numpy(waveform(0.5))[None]
    target = torch.zeros(1, 2, mixture.shape[-1])
    estimate = torch.stack([mixture, 0.1 * mixture], dim=1)
    loss = separation_loss(estimate, target, mixture)
    expected = (10 * math.log10(1 + 1e-4) + 10 * math.log10(0.01 + 1e-4)) / 2
    assert float(loss) == pytest.approx(expected, abs=1e-3)
    assert float(separation_loss(torch.zeros_like(target), target, mixture)) == pytest.approx(-40.0, abs=1e-3)


def test_loss_weights_and_query_mask():
    torch.manual_seed(0)
    target = torch.randn(2, 3, 800)
    estimate = target + 0.3 * torch.randn(2, 3, 800)
    mixture = target.sum(1)
    items = -(0.9 * sdr(target, estimate) + 0.1 * si_sdr(target, estimate))
    weights = torch.tensor([[1.0, 0.5, 0.0], [2.0, 1.0, 1.0]])
    weighted = separation_loss(estimate, target, mixture, weights=weights)
    torch.testing.assert_close(weighted, (items * weights).sum() / weights.sum())
    mask = torch.tensor([[True, True, False], [True, False, False]])
    masked = separation_loss(estimate, target, mixture, query_mask=mask)
    torch.testing.assert_close(masked, items[mask].mean())
    with pytest.raises(ValueError, match="weights must be"):
        separation_loss(estimate, target, mixture, weights=torch.ones(2))


# --------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("loss", ["snr_sisnr", "l1"])
def test_optimiser_steps_lower_the_loss(loss):
    model = tiny_model(loss=loss).train()
    sources = torch.from_numpy(np.stack([waveform(0.5, seed=seed) for seed in range(2)]))
    tones = torch.sin(2 * math.pi * 440 * torch.arange(sources.shape[-1]) / RATE).repeat(2, 1) * 0.2
    mixture = sources + tones
    query_ids = torch.tensor([[0, 1, 2]] * 2)
    targets = torch.stack([sources, tones, torch.zeros_like(tones)], dim=1)  # "Chirp, tweet" is absent: silent target
    weights = torch.tensor([[1.0, 1.0, 0.5]] * 2)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        output = model(mixture, query_ids, target_values=targets, target_weights=weights)
        optimiser.zero_grad()
        output.loss.backward()
        optimiser.step()
        losses.append(output.loss.item())
    assert all(math.isfinite(value) for value in losses)
    if loss == "snr_sisnr":
        assert losses[-1] < losses[0] - 0.5  # dB
    else:
        assert losses[-1] < 0.95 * losses[0]


# --------------------------------------------------------------------------------------------- query kinds
def test_residual_is_the_input_minus_the_outputs_at_the_input_rate():
    model = tiny_model()
    stereo = waveform(1.3, rate=44100, channels=2)
    output = model.separate(stereo, ["Speech", "Bark"], sampling_rate=44100, return_residual=True)
    np.testing.assert_array_equal(output.separated_values, model.separate(stereo, ["Speech", "Bark"], 44100))
    assert output.residual.shape == (stereo.shape[1],) and output.residual.dtype == np.float32
    np.testing.assert_allclose(output.separated_values.sum(0) + output.residual, stereo.mean(0), atol=1e-6)
    energy = (output.separated_values.astype(np.float64) ** 2).sum(-1) / (stereo.mean(0).astype(np.float64) ** 2).sum()
    np.testing.assert_allclose(output.level_db, 10 * np.log10(energy), atol=1e-4)
    plain = model.separate(stereo, "Speech", 44100, return_dict=True)
    assert plain.residual is None and plain.level_db.shape == (1,)
    batch = model.separate([stereo[0], stereo[1][:8000]], [["Bark"], ["Speech"]], 44100, return_residual=True)
    assert [item.residual.shape for item in batch] == [(stereo.shape[1],), (8000,)]


def test_negative_queries_take_their_mask_out_of_every_output():
    model = tiny_model()
    audio = waveform(2.5)
    with torch.no_grad():  # the reference: masks of positive and negative queries from one forward pass
        output = model(torch.from_numpy(audio)[None], model.query_ids(["Speech", "Bark", "Chirp, tweet"])[None])
        masks = output.masks[:, :2] * (1 - output.masks[:, 2:])
        expected = model.spectrogram.istft(masks * model.spectrogram.stft(torch.from_numpy(audio)[None])[:, None], audio.size)
    separated = model.separate(audio, ["Speech", "Bark"], negative_queries=["Chirp, tweet"], chunk_seconds=60.0)
    np.testing.assert_allclose(separated, expected[0].numpy(), atol=1e-5)
    plain = model.separate(audio, ["Speech", "Bark"])
    assert (separated.astype(np.float64) ** 2).sum() < (plain.astype(np.float64) ** 2).sum()
    chunked = model.separate(audio, ["Speech", "Bark"], negative_queries="Chirp, tweet", batch_size=2)
    assert snr_db(separated, chunked) > 30.0  # chunked inference stays exact with negatives
    batch = model.separate([audio, audio], [["Speech", "Bark"], ["Speech", "Bark"]], negative_queries=[["Chirp, tweet"], []])
    np.testing.assert_allclose(batch[0], chunked, atol=1e-5)
    np.testing.assert_allclose(batch[1], plain, atol=1e-5)
    with pytest.raises(ValueError, match="at least one query"):
        model.separate(audio, [], negative_queries=["Bark"])
    with pytest.raises(ValueError, match="2 waveforms but 1 lists of negative queries"):
        model.separate([audio, audio], [["Bark"], ["Bark"]], negative_queries=[["Speech"]])
