"""Evaluation: data to measure the system against (calibrated synthetic templates with planted
duplicates and their ground truth), kept apart from the gallery and the matching they test."""
