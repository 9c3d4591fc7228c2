"""The lifecycle package's error hierarchy: one root, a few meaningful leaves."""


class LifecycleError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(LifecycleError):
    """The environment or a configuration file is invalid; the message says what to fix."""


class StageModelError(ConfigError):
    """A stage model file is inconsistent (unknown stage, unreachable stage, unknown guard)."""


class RuleViolation(LifecycleError):
    """A command was refused by the domain rules; nothing was recorded."""


class StoreError(LifecycleError):
    """The event store failed (driver errors are translated into this at the adapter)."""
