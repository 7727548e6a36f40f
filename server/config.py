"""The server's settings and model config, under the names its modules use. Both are
written once for every component: the settings in config/settings.toml (generated into
config/settings_gen.py, loaded by config/settings.py: flag > ``VOLSPIKE_*`` > ``--config``
file > default, as the native server), the model config reader in config/model_config.py."""

from __future__ import annotations

from config.model_config import (
    DEFAULT_MODEL_NAME,
    ModelConfig,
    active_artifact,
    parse_model_config,
    read_model_config,
)
from config.settings_gen import ROOT
from config.settings_gen import ServerSettings as Settings

__all__ = [
    "DEFAULT_MODEL_NAME",
    "ROOT",
    "ModelConfig",
    "Settings",
    "active_artifact",
    "parse_model_config",
    "read_model_config",
]
