"""The emulator's configuration error, shared by the state modules (kept apart to avoid an
import cycle between state.py and iam.py)."""


class ConfigError(ValueError):
    """The configuration file or an admin body is invalid."""
