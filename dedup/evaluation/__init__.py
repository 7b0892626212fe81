"""Evaluation: data to measure the system against (calibrated synthetic templates with planted
duplicates and their ground truth; labelled sets with planted group differentials), and
``dedup evaluate``'s open-set 1:N metrics, intervals, demographic differentials and report
(docs/evaluation.md), kept apart from the gallery and the matching they test."""
