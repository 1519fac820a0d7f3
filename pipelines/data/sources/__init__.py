"""One module per raw format; each stages its files into ``raw_stage`` and normalizes them into ``raw_events``."""
