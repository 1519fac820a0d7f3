"""Lifelong serving: per-user recurrent states in a store, O(1) updates per event, a recommendation service.

``engines`` packs each model's per-user state into a row and advances it; ``fused_step`` is RecMamba's
compiled single step; ``store`` keeps rows in SQLite; ``updates`` applies event batches; ``build`` encodes
whole histories into a new store; ``service`` and ``app`` answer HTTP requests.
"""
