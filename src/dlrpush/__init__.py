"""dlrpush: push SMS status reports to customers' HTTP callbacks, durably, in each customer's format."""

__version__ = "0.1.0"
