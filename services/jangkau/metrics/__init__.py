"""The metrics service: hourly delivery reports and conversion events, stored once
and exactly once, and the per-arm statistics the allocator learns from."""
