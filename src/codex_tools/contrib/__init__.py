"""Integrations with other systems, each importable only with its extra."""
