"""The periodic work: sampling the broker, keeping the metrics."""
