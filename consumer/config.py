"""The consumer's settings: written once in config/settings.toml (its ``[consumer.*]``
settings, variables ``VOLSPIKE_CONSUMER_*``), generated into config/settings_gen.py and
loaded by config/settings.py (flag > variable > ``--config`` file > default)."""

from __future__ import annotations

from config.settings_gen import ConsumerSettings

__all__ = ["ConsumerSettings"]
