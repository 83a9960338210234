"""The worker process: fetcher, executor, lease keeper and settler around one event loop."""
