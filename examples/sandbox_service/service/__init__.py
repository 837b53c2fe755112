"""A small service with the two singletons most services have: settings and transports."""
