"""The typed config loader: profiles merge, and every kind of bad params.yaml fails with a one-line named error."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from avatarv.config import PROFILES, Config, load_config, load_raw, to_flat_dict
from avatarv.errors import ConfigError
from avatarv.paths import PARAMS


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads_into_typed_sections(profile):
    cfg = load_config(profile)
    assert isinstance(cfg, Config) and cfg.profile == profile
    for f in dataclasses.fields(cfg):
        assert getattr(cfg, f.name) is not None


def test_profiles_override_only_what_they_name():
    tiny, small = load_config("tiny"), load_config("small")
    raw_small = load_raw()["profiles"]["small"]
    assert small.corpus.identities == raw_small["corpus"]["identities"] != tiny.corpus.identities
    assert small.curate == tiny.curate or "curate" in raw_small  # untouched sections equal the base
    assert small.seed == tiny.seed
    assert small.corpus.fps == tiny.corpus.fps


def test_tiny_profile_has_enough_identities_for_the_corpus_issue():
    assert load_config("tiny").corpus.identities >= 24


def _write(tmp_path, raw):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_unknown_profile_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config("huge")


def test_missing_key_is_named(tmp_path):
    raw = load_raw()
    del raw["corpus"]["identities"]
    with pytest.raises(ConfigError, match=r"missing key corpus\.identities"):
        load_config("tiny", _write(tmp_path, raw))


def test_unknown_key_is_named(tmp_path):
    raw = load_raw()
    raw["vae"]["lernrate"] = 1
    with pytest.raises(ConfigError, match=r"unknown key vae\.lernrate"):
        load_config("tiny", _write(tmp_path, raw))


def test_wrong_type_is_named(tmp_path):
    raw = load_raw()
    raw["corpus"]["identities"] = "many"
    with pytest.raises(ConfigError, match=r"corpus\.identities = 'many' should be of type int"):
        load_config("tiny", _write(tmp_path, raw))


def test_profile_override_with_unknown_key_is_named(tmp_path):
    raw = load_raw()
    raw["profiles"]["small"]["dit"]["depth"] = 3
    with pytest.raises(ConfigError, match=r"unknown key dit\.depth"):
        load_config("small", _write(tmp_path, raw))


def test_dit_holds_architecture_sampling_and_conditions_their_own_sections(tmp_path):
    """Sampling knobs and SFT conditions are separate sections; the DiT section holds architecture only."""
    small, raw = load_config("small"), load_raw()
    assert small.sampling.steps == raw["profiles"]["small"]["sampling"]["steps"]
    assert small.dit.hidden == raw["profiles"]["small"]["dit"]["hidden"]
    assert small.conditions == load_config("tiny").conditions  # small overrides no condition
    raw["dit"]["steps"] = 12
    with pytest.raises(ConfigError, match=r"unknown key dit\.steps"):
        load_config("tiny", _write(tmp_path, raw))


def test_unknown_profile_entry_is_named(tmp_path):
    raw = load_raw()
    raw["profiles"]["huge"] = {"dit": {"hidden": 4096}}
    with pytest.raises(ConfigError, match=r"unknown profile profiles\.huge"):
        load_config("tiny", _write(tmp_path, raw))


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_config("tiny", tmp_path / "nope.yaml")


def test_errors_are_one_line(tmp_path):
    raw = load_raw()
    raw["seed"] = [1]
    with pytest.raises(ConfigError) as e:
        load_config("tiny", _write(tmp_path, raw))
    assert "\n" not in str(e.value)


def test_flat_dict_round_trips_values():
    cfg = load_config("tiny")
    flat = to_flat_dict(cfg)
    assert flat["corpus.identities"] == cfg.corpus.identities
    assert flat["train.sft.lr"] == cfg.train.sft.lr


def test_only_config_reads_yaml():
    """Nothing outside config.py parses params.yaml (one typed loader); other YAML (accelerate configs) is fine."""
    from pathlib import Path

    src = Path(PARAMS).parent / "src" / "avatarv"
    offenders = [
        p.name
        for p in src.rglob("*.py")
        if p.name != "config.py" and "safe_load" in (text := p.read_text()) and re.search(r"\bPARAMS\b|'params\.yaml'|\"params\.yaml\"", text)
    ]
    assert offenders == []


def test_small_profile_builds_the_documented_model():
    """`profiles.small` (one H100, issue 18): 128-px frames, a 149.7 M-parameter DiT (768 wide, 12 blocks, 12 heads)
    over a 16-channel latent, streamed windows and a time limit on every training stage."""
    import torch

    from avatarv.train.generator import AvatarGenerator

    cfg = load_config("small")
    assert (cfg.corpus.size, cfg.train.sft.size, cfg.vae.latent_channels) == (128, 128, 16)
    assert all(st.stream and st.time_limit_s > 0 for st in (cfg.train.t2v, cfg.train.a2v, cfg.train.sft))
    with torch.device("meta"):  # shapes only: no memory, no init time
        gen = AvatarGenerator.from_config(cfg, cfg.vae.latent_channels, cfg.vae.temporal_downsample)
    assert sum(p.numel() for p in gen.transformer.parameters()) == 149_669_968
    assert (gen.transformer.config.sample_size, len(gen.transformer.blocks)) == (128, 12)
