"""query_encoder="clap": free-text and audio queries through a (tiny, random, local) CLAP model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, PreTrainedTokenizerFast

from clearsep_data.modeling import ClearSepModel
from clearsep_data.modeling.clap_query_encoder import CAPTION_TEMPLATES, CLAP_SUBFOLDER, ClapProcessors
from test_modeling import snr_db, tiny_config, waveform

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "speech bark chirp , tweet the sound of can be heard a recording in background dog barking rain".split()
TINY_CLAP = dict(
    projection_dim=8,
    text_config=dict(vocab_size=len(WORDS) + 4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=24),
    audio_config=dict(window_size=4, num_mel_bins=16, spec_size=64, patch_size=4, patch_stride=[4, 4], depths=[1, 1],
                      num_attention_heads=[2, 2], hidden_size=16, patch_embeds_hidden_size=8, enable_fusion=False),
)  # fmt: skip


def tiny_clap_folder(folder):
    """A randomly initialised CLAP with a word-level tokenizer and a small feature extractor, saved as a Hub model."""
    torch.manual_seed(1)
    ClapModel(ClapConfig(**TINY_CLAP)).save_pretrained(folder)
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<s>", "<pad>", "</s>", "<unk>", *WORDS])}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    tokenizer.save_pretrained(folder)
    ClapFeatureExtractor(
        feature_size=16, sampling_rate=8000, hop_length=80, max_length_s=2, fft_window_size=256,
        truncation="rand_trunc", padding="repeatpad",
    ).save_pretrained(folder)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return tiny_clap_folder(tmp_path_factory.mktemp("tiny-clap"))


@pytest.fixture(scope="module")
def model(clap_dir):
    torch.manual_seed(0)
    return ClearSepModel.from_pretrained_clap(clap_dir, tiny_config()).eval()


def test_pretrained_clap_is_loaded_and_label_names_cached(model, clap_dir):
    pretrained = ClapModel.from_pretrained(clap_dir)
    for name, value in pretrained.state_dict().items():
        torch.testing.assert_close(model.query_encoder.clap.state_dict()[name], value, rtol=0, atol=0)
    assert model.config.query_encoder == "clap" and model.config.clap_config.projection_dim == 8
    cached = model.query_encoder.label_embeddings
    assert cached.shape == (3, 1 + len(CAPTION_TEMPLATES), 8)
    torch.testing.assert_close(cached.norm(dim=-1), torch.ones(cached.shape[:2]))
    tokenizer = model.clap_processors.tokenizer
    with torch.no_grad():  # the cache holds the plain name, then each template around it
        expected = pretrained.get_text_features(**tokenizer(["Bark", "the sound of Bark"], padding=True, return_tensors="pt")).pooler_output
    torch.testing.assert_close(cached[1, :2], expected, atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in model.query_encoder.clap.parameters())


def test_free_text_queries_and_label_queries_cost_no_text_tower(model, monkeypatch):
    audio = waveform(2.5)
    free = model.separate(audio, ["a dog barking in the rain", "Bark"])
    assert free.shape == (2, audio.size) and np.isfinite(free).all()
    np.testing.assert_allclose(free[1], model.separate(audio, "bark")[0], atol=1e-6)
    # A label's display name as text equals the cached label query.
    with torch.no_grad():
        computed = model.query_encoder.projection(model.query_encoder.embed_texts(model.clap_processors.tokenizer, ["Bark"]))
    torch.testing.assert_close(model.query_embeddings(["Bark"]), computed, atol=1e-5, rtol=0)
    assert snr_db(model.separate(audio, "Bark"), free[1:]) > 60

    def no_text_tower(*args, **kwargs):
        raise AssertionError("label queries must use the cached embeddings")

    monkeypatch.setattr(model.query_encoder, "embed_texts", no_text_tower)
    model.separate(audio, ["Speech", "/m/05tny_"], negative_queries=["Chirp, tweet"])


def test_audio_example_queries(model, clap_dir):
    audio = waveform(2.0)
    example, other = waveform(1.0, seed=4), waveform(1.5, seed=7)
    output = model.separate(audio, ["Bark"], query_audio=[example, other], return_dict=True)
    assert output.separated_values.shape == (3, audio.size) and output.level_db.shape == (3,)
    only_audio = model.separate(audio, query_audio=example)
    np.testing.assert_allclose(only_audio[0], output.separated_values[1], atol=1e-6)
    extractor = ClapFeatureExtractor.from_pretrained(clap_dir)
    with torch.no_grad():
        direct = ClapModel.from_pretrained(clap_dir).get_audio_features(**extractor([example], sampling_rate=8000, return_tensors="pt")).pooler_output
    torch.testing.assert_close(model.query_encoder.embed_audio(extractor, [example], 8000), direct, atol=1e-5, rtol=0)
    resampled = model.separate(
        np.repeat(audio, 2), query_audio=[np.repeat(example, 2)], sampling_rate=16000
    )  # any rate: the example is resampled to CLAP's rate
    assert resampled.shape == (1, 2 * audio.size)


def test_training_draws_caption_variants(model):
    encoder = model.query_encoder
    ids = torch.tensor([[1] * 64])
    encoder.train()
    try:
        torch.manual_seed(0)
        drawn = encoder(ids)[0]
    finally:
        encoder.eval()
    variants = encoder.projection(encoder.label_embeddings[1])  # (V, D)
    matches = torch.cdist(drawn, variants).argmin(dim=1)
    torch.testing.assert_close(drawn, variants[matches])
    assert len(set(matches.tolist())) == len(variants)  # the plain name and every template are drawn
    assert not encoder.clap.training  # the frozen CLAP stays in eval mode


def test_save_load_keeps_the_clap_processors(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert (tmp_path / CLAP_SUBFOLDER / "tokenizer.json").is_file()
    assert (tmp_path / CLAP_SUBFOLDER / "preprocessor_config.json").is_file()
    loaded = ClearSepModel.from_pretrained(tmp_path)
    audio, example = waveform(1.5), waveform(1.0, seed=4)
    np.testing.assert_allclose(
        loaded.separate(audio, ["a dog barking"], query_audio=[example]),
        model.separate(audio, ["a dog barking"], query_audio=[example]),
        atol=1e-6,
    )


def test_clap_from_a_hub_id_and_clear_errors(hub, clap_dir, tmp_path):
    commit = hub.publish(clap_dir, "model", "laion/tiny-clap")
    from_hub = ClearSepModel.from_pretrained_clap("laion/tiny-clap", tiny_config(), revision=commit)
    assert from_hub.clap_processors.tokenizer is not None
    bare = ClearSepModel(tiny_config(query_encoder="clap", clap_config=TINY_CLAP))
    bare.query_encoder.label_embeddings.fill_(0.5)  # as if cached, but no tokenizer was ever given
    with pytest.raises(ValueError, match="text queries need the CLAP tokenizer"):
        bare.separate(waveform(1.0), ["a dog barking"])
    bare.clap_processors = ClapProcessors.from_pretrained(clap_dir)
    assert bare.separate(waveform(1.0), ["a dog barking"]).shape == (1, 8000)
    embedding = ClearSepModel(tiny_config())
    with pytest.raises(ValueError, match="unknown queries \\['a dog barking'\\]"):
        embedding.separate(waveform(1.0), ["a dog barking"])
    with pytest.raises(ValueError, match="audio queries need query_encoder='clap'"):
        embedding.separate(waveform(1.0), query_audio=[waveform(1.0)])
