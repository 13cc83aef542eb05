"""Janus: admission control for background jobs that call rate-limited external services."""
