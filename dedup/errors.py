"""The typed error hierarchy.

Every error that reaches an operator is a ``DedupError`` whose message says what is wrong
and what to do about it. Per-row problems in a batch are not errors: they become reject
rows with a reason code (see ``dedup.contracts.reasons``).
"""

from __future__ import annotations


class DedupError(Exception):
    """Base of every error ``dedup`` raises on purpose."""


class ConfigError(DedupError):
    """The settings file or environment holds an invalid value."""


class ManifestError(DedupError):
    """The batch manifest as a whole cannot be read (missing file, unknown format, no header).

    A bad *row* is never a ``ManifestError``: it is rejected with a reason code.
    """


class LakeError(DedupError):
    """A Delta table in the lake is missing, unreadable or has an unexpected schema."""


class DependencyError(DedupError):
    """A required external artefact (Delta jars, model weights, test portraits) is absent."""


class ModelError(DedupError):
    """A face model is missing, malformed, or does not match its registry entry."""


class GalleryError(DedupError):
    """A gallery is missing, corrupt (a checksum does not match), or used with the wrong model."""


class EvaluationError(DedupError):
    """An evaluation set (templates and labels for ``dedup evaluate``) cannot be used as given:
    a missing column, a duplicate or unmatched id, a non-finite vector, mixed dimensions."""


class AdjudicationError(DedupError):
    """A review step the rules do not allow: a case in the wrong state, the same adjudicator
    twice on a four-eyes decision, a missing reason, or a lease that is not the caller's."""


class StaleLease(AdjudicationError):
    """A completion carried a lease token that no longer holds the case; nothing changed."""


class InjectedCrash(DedupError):
    """Raised at a named crash point when a fault test asks for it (see ``dedup.crash_points``)."""
