"""The application of docs/sandbox.md: two singletons a test leaves behind."""
