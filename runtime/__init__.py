"""The runtime root: the composition of cameras, event store, bus and sinks that `web/` serves."""
