"""Configuration: schemas (:mod:`configs.schema`) and the YAML values beside them."""

from pathlib import Path

from configs.schema import Config, ConfigError, register_configs, validate

CONFIG_DIR = str(Path(__file__).resolve().parent)

__all__ = ["CONFIG_DIR", "Config", "ConfigError", "register_configs", "validate"]
