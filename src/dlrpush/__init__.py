"""dlrpush: push SMS status reports to customers' HTTP callbacks, durably, in their format."""

__version__ = "0.1.0"
