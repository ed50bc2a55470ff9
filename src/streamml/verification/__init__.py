"""End-to-end checks of a running platform (used by verification/verify_streaming.py and the e2e tests)."""
