"""The resilience sidecar of every member pod: circuit breaking, rate limiting, pooled HTTP and
discovery by capability. Its decisions are non-blocking state machines (`breaker`, `limiter`)."""
