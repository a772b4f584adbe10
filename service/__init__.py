"""Ablate's control side: specs, study plans, stores, the client, the reporter and the CLI.

Imports without TensorFlow; training lives in `workers`.
"""

__version__ = "0.1.0"
