"""The continuous projection of `recompute project`: followers, their partition leases, timers, the circuit breaker."""
