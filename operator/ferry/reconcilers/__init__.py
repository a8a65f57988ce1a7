"""Reconcilers: pure decisions from an object (and observed state) to the status it should have."""
