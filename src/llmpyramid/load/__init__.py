"""The load layer: LLM-aware locust users, metrics, SLO gates, shapes, reports, distributed runs."""
