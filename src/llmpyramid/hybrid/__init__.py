"""Hybrid layer: base + burst llama.cpp backends behind a router; overflow, failover, fail-back, loss per phase."""
