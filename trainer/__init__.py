"""Offline training: data -> balanced training set -> candidates -> report -> published model."""
