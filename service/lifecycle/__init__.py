"""What state a run is in, who may move it, and the documents that cross a boundary.

One owner (DESIGN.md, "Run lifecycle"), in three modules: `states.py` holds `RunState` and its
predicates; `documents.py` the typed, versioned pydantic models of every document the control
side and the workers exchange (`study.json`, `run.json`, `status.json`, `metrics.json`, a
study's rounds and repair, the queue message); `storage.py` their keys, reading and writing
them, and the effective state of a run read from the store (`metrics.json` present = succeeded,
beats `status.json`; no status = queued).

Layout: `runs/{run_id}/run.json, status.json, checkpoints/, model.keras, metrics.json` and
`studies/{study_id}/study.json, rounds/, report/`. `metrics.json` is written once, last.
"""
