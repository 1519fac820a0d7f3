"""One module per raw format (kuairand, lfm1b, generic, synthetic); each stages its files into ``raw_stage``
and normalizes them into ``raw_events``. Shared by all: ``files`` (which landing files, header, safety),
``staging`` (DuckDB's rejects and bad rows as one-line errors), ``lines`` (real line numbers) and
``timestamps`` (units and the plausible range).
"""
