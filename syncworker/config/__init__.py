"""``gitops-config.yaml``: the seed's configuration file, parsed and loaded into the
database. ``schema`` validates without touching the database; ``importer`` writes."""

from syncworker.config.schema import (
    ApplyerSpec,
    ConfigError,
    GitopsConfig,
    RepoSpec,
    ServiceSpec,
    load_config_file,
    parse_config,
)

__all__ = [
    "ApplyerSpec",
    "ConfigError",
    "GitopsConfig",
    "RepoSpec",
    "ServiceSpec",
    "load_config_file",
    "parse_config",
]
