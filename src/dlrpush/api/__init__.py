"""The HTTP API of dlrpush; see ``create_app``."""

from dlrpush.api.app import create_app

__all__ = ["create_app"]
