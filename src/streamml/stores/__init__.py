"""Adapters to the platform's stores (MinIO objects, Redis features); third-party errors are wrapped here."""
