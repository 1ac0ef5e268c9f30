"""modelpilot: a Kubernetes operator that exports ML models and rolls them out safely."""

__version__ = "0.1.0"
