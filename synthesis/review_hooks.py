"""Handlers and presenters that synthesis registers with the review app."""
