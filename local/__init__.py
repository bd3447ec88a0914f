"""Mailroom embedded local runtime."""
