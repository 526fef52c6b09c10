"""The one room for evaluation: engine.evaluate reads (sources.py: the log and the legacy stores,
or what a follower's step read), stands kept facts in where they stand (kept.py, kept_facts.py),
decides each account (domain/decide.py) and keeps what it folded. ranges.py splits a fleet."""
