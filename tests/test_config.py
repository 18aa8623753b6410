from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from clipgen.config import ConfigError, load_config, save_config, to_dict


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])


@dataclass
class Top:
    name: str = "x"
    steps: int = 10
    mode: Literal["a", "b"] = "a"
    path: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\noptim:\n  lr: 2.0e-4\n")
    cfg = load_config(Top, path, ["optim.lr=1e-4", "mode=b", "optim.betas=[0.5, 0.9]", "path=/x"])
    assert cfg.steps == 5 and cfg.mode == "b" and cfg.path == "/x"
    # "1e-4" is a string to YAML 1.1; a float field still takes it
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == [0.5, 0.9]


def test_unknown_key_in_file_lists_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(Top, path)
    assert "optim.learning_rate" in str(err.value) and "betas, lr" in str(err.value)


def test_unknown_override_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config(Top, None, ["optim.lrr=1"])
    assert "lrr" in str(err.value) and "betas, lr" in str(err.value)
    with pytest.raises(ConfigError, match="valid keys there: mode, name, optim, path, steps"):
        load_config(Top, None, ["stepz=1"])


@pytest.mark.parametrize("override", ["steps=1.5", "steps=true", "mode=c", "optim=3", "name=[1]", "noequals"])
def test_bad_values_are_errors(override):
    with pytest.raises(ConfigError):
        load_config(Top, None, [override])


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Top, tmp_path / "nope.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(Top, None, ["optim.lr=0.5", "name=中文"])
    save_config(cfg, tmp_path / "saved.yaml")
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text("utf-8"))["name"] == "中文"
    again = load_config(Top, tmp_path / "saved.yaml")
    assert to_dict(again) == to_dict(cfg)
